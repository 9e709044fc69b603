from supporttune.data.clean import Limits, clean_text, filter_reason, is_english, redact, strip_signoff, unescape


def test_unescape_html_entities():
    assert unescape("Fish &amp; chips &lt;3 &amp;amp;") == "Fish & chips <3 &"


def test_redact_urls_emails_handles_phones_numbers():
    text = "@AmazonHelp hi @bob see https://t.co/abc or www.x.com, mail me@mail.co.uk, call 555-123-4567, acct 123456789, ref 87654321"
    out = redact(text)
    assert out == "hi __user__ see __url__ or __url__, mail __email__, call __phone__, acct __id__, ref __id__"


def test_leading_possessive_handle_is_kept_as_placeholder():
    assert redact("@Uber’s surge pricing") == "__user__’s surge pricing"


def test_signoffs_removed():
    assert strip_signoff("We can help. ^MM") == "We can help."
    assert strip_signoff("DM us please -Becky") == "DM us please"
    assert strip_signoff("Sorry! /AY") == "Sorry!"
    assert strip_signoff("Thanks for waiting 2/2") == "Thanks for waiting"
    assert strip_signoff("Help has arrived!\n^HSB ^JL") == "Help has arrived!\n"[:-1]
    assert strip_signoff("Call us on 0-800") == "Call us on 0-800"  # not a name


def test_clean_text_reply_end_to_end():
    raw = "@115712 Please DM us &amp; we&#39;ll help.\n^HSB"
    assert clean_text(raw, is_reply=True) == "Please DM us & we'll help."


def test_filters_name_each_reason():
    lim = Limits(min_chars=3, max_input_chars=50, max_output_chars=50)
    assert filter_reason("", "ok reply", lim) == "empty"
    assert filter_reason("__url__", "Thanks for that", lim) == "too_short"
    assert filter_reason("x" * 60, "Thanks for that", lim) == "too_long"
    assert filter_reason("Necesito ayuda con mi cuenta por favor", "Claro, envíanos un mensaje directo", lim) == "non_english"
    assert filter_reason("My order is late", "Sorry, please DM us", lim) is None


def test_language_check():
    assert is_english("i sent a dm")
    assert is_english("Tried, didn't work. How rude :/")
    assert not is_english("こんにちは、アマゾン公式です。Fire TV Stickが見れない")
    assert not is_english("buenas tardes. Intento comprar por play store y me rechaza las compras")
