"""The WordNet triples both the quickstart and the offline eval tasks are built from."""

from grace_st.wordnet import build_triples, load_synsets, parse_data_line, split_of, wordnet_triples


LINE = (
    "00217593 04 n 01 kill 1 002 @ 00217014 n 0000 + 00355365 v 0101 | the destruction of an enemy plane or ship or "
    'tank or missile; "the pilot reported two kills during the mission"  '
)


def test_parse_data_line_separates_definition_and_examples():
    synset = parse_data_line(LINE, "n")
    assert synset.lemmas == ("kill",)
    assert synset.definition == "the destruction of an enemy plane or ship or tank or missile"
    assert synset.examples == ("the pilot reported two kills during the mission",)
    assert synset.lexname == "noun.act"
    assert parse_data_line("  1 This software and database is being provided", "n") is None


def test_split_is_stable_and_case_insensitive():
    assert split_of("Bank") == split_of("bank")
    fraction = sum(split_of(f"word{i}") == "heldout" for i in range(5000)) / 5000
    assert 0.08 < fraction < 0.12


def test_triples_use_another_sense_as_negative_and_never_share_a_word_across_splits():
    triples = build_triples(load_synsets())
    assert len(triples["train"]) > 10_000 and len(triples["heldout"]) > 1_000
    for row in triples["train"][:500] + triples["heldout"][:500]:
        assert row["negative"] != row["positive"] and row["negative_synset"] != row["synset"]
        assert row["query"] and row["positive"]
    train_words = {row["word"].lower() for row in triples["train"]}
    assert not train_words & {row["word"].lower() for row in triples["heldout"]}


def test_wordnet_triples_is_reproducible():
    assert wordnet_triples("heldout", limit=20) == wordnet_triples("heldout", limit=20)
