"""An Ollama Modelfile next to an exported GGUF, so `ollama create NAME -f Modelfile` serves the fine-tuned model
with the same ChatML prompt it was trained on (Ollama does not run the tokenizer's Jinja chat template:
it needs a Go template).

``chatml_template`` is pure (tested against the HF tokenizer's ChatML rendering); ``write_modelfile`` only
formats and writes. Greedy decoding (temperature 0) by default, like supporttune's own evaluation.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import UserError

CHATML_STOPS = ("<|im_start|>", "<|im_end|>")
DEFAULT_PARAMS: dict = {"temperature": 0, "stop": list(CHATML_STOPS)}


def chatml_template(start: str = "<|im_start|>", end: str = "<|im_end|>") -> str:
    """Go template of a ChatML prompt: every message (system, user, assistant) as ``START role\\ncontent END\\n``,
    then ``START assistant\\n`` for the reply. The ``.Prompt`` branch serves /api/generate on Ollama versions
    that do not fill ``.Messages`` there. Ollama puts the Modelfile's SYSTEM first in ``.Messages`` itself."""
    turn = f"{start}{{{{ .Role }}}}\n{{{{ .Content }}}}{end}\n"
    return (
        "{{- if .Messages }}\n"
        f"{{{{- range .Messages }}}}{turn}{{{{ end }}}}\n"
        "{{- else }}\n"
        f"{{{{- if .System }}}}{start}system\n{{{{ .System }}}}{end}\n{{{{ end }}}}"
        f"{{{{- if .Prompt }}}}{start}user\n{{{{ .Prompt }}}}{end}\n{{{{ end }}}}\n"
        f"{{{{- end }}}}{start}assistant\n"
    )


def _value(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def modelfile_text(gguf_name: str, template_go: str, params: dict | None = None, system: str | None = None) -> str:
    """The Modelfile's text: FROM, TEMPLATE, one PARAMETER line per value (a list gives one line per item,
    as Ollama wants for ``stop``), SYSTEM if given. ``params`` are merged over temperature 0 and ChatML stops."""
    for label, text in (("template", template_go), ("system prompt", system or "")):
        if '"""' in text:
            raise UserError(f"Modelfile: the {label} contains triple quotes, which end a Modelfile block")
    if "/" in gguf_name or "\\" in gguf_name:
        raise UserError(f"Modelfile: {gguf_name!r} must be a file name in the same folder as the Modelfile")
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template_go}"""']
    for key, value in {**DEFAULT_PARAMS, **(params or {})}.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            lines.append(f"PARAMETER {key} {_value(item)}")
    if system:
        lines.append(f'SYSTEM """{system}"""')
    return "\n".join(lines) + "\n"


def write_modelfile(out_dir: Path, gguf_name: str, template_go: str, params: dict | None = None,
                    system: str | None = None) -> Path:
    """Write ``out_dir/Modelfile`` for the GGUF ``out_dir/gguf_name``; return its path."""
    out_dir = Path(out_dir)
    if not (out_dir / gguf_name).is_file():
        raise UserError(f"Modelfile: {out_dir / gguf_name} not found (write the GGUF first)")
    path = out_dir / "Modelfile"
    path.write_text(modelfile_text(gguf_name, template_go, params, system), encoding="utf-8")
    return path
