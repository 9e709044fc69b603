import pytest

from supporttune.data.tagging import category, priority, sentiment_score, tag

LABELLED = [
    # text, sentiment, priority, category
    ("My order never arrived and I am furious!!", "negative", "high", "complaint"),
    ("My account was hacked and money is gone", "negative", "high", "complaint"),
    ("How do I change my delivery address?", "neutral", "low", "question"),
    ("Thanks so much, the agent was brilliant!", "positive", "low", "other"),
    ("The app keeps crashing on my phone", "neutral", "medium", "other"),
    ("I want a refund for this broken blender", "negative", "medium", "complaint"),
    ("Still waiting for my parcel, day 5 now", "neutral", "high", "complaint"),
    ("Is the service down in Leeds?", "neutral", "high", "question"),
]


@pytest.mark.parametrize("text,sentiment,prio,cat", LABELLED)
def test_tagger_on_labelled_examples(text, sentiment, prio, cat):
    t = tag(text)
    assert (t.sentiment, t.priority, t.category) == (sentiment, prio, cat)


def test_vader_vs_textblob_on_the_seed_example():
    text = "My order never arrived and I am furious!!"
    assert sentiment_score(text, "vader") < -0.5
    assert sentiment_score(text, "textblob") == 0.0
    assert tag(text, "textblob").sentiment == "neutral"


def test_priority_and_category_rules_are_pure_functions():
    assert priority("hello there", 0.0) == "low"
    assert priority("why??", 0.0) == "medium"
    assert priority("this is the worst!!", -0.8) == "high"
    assert category("what time do you open", 0.0) == "question"
    assert category("nice", 0.5) == "other"
    assert category("meh", -0.7) == "complaint"
