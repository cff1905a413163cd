"""The YAML loader: positions of keys and values, and the YAML mistakes it reports."""

import textwrap

import pytest

from bots.source import Map, Pos, Seq, YamlError, load


def read(text: str):
    return load(textwrap.dedent(text), "flows/x.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(YamlError) as caught:
        read(text)
    return [str(d) for d in caught.value.diagnostics]


def test_keys_and_values_remember_their_line_and_column():
    data = read("""\
        start: greet
        states:
          greet:
            say: "Hi"
            buttons:
              - {title: Go, goto: bye}
        """)
    assert isinstance(data, Map)
    assert data.at_key("start") == Pos(1, 1)
    assert data.at_value("start") == Pos(1, 8)
    greet = data["states"]["greet"]
    assert data["states"].at_key("greet") == Pos(3, 3)
    assert greet.at_key("say") == Pos(4, 5)
    assert greet.at_value("say") == Pos(4, 10)
    buttons = greet["buttons"]
    assert isinstance(buttons, Seq)
    assert buttons.at(0) == Pos(6, 9)
    assert buttons[0].at_value("goto") == Pos(6, 27)


def test_a_missing_key_points_at_its_mapping():
    data = read("a:\n  b: 1\n")
    assert data["a"].at_key("nothing") == data["a"].pos == Pos(2, 3)


def test_duplicate_key_is_an_error_naming_the_first_line():
    assert problems("""\
        start: a
        states: {}
        start: b
        """) == ["flows/x.yaml:3:1: error: duplicate key 'start' (first at line 1)"]


def test_every_duplicate_key_of_a_file_is_reported():
    found = problems("a: 1\na: 2\nb:\n  c: 1\n  c: 2\n")
    assert [d.split(": error")[0] for d in found] == ["flows/x.yaml:2:1", "flows/x.yaml:5:3"]


def test_a_second_document_is_an_error_telling_to_remove_the_separator():
    assert problems("a: 1\n---\nb: 2\n") == [
        "flows/x.yaml:2:1: error: YAML syntax: a flow file holds one YAML document; "
        "remove the extra '---'"
    ]


def test_a_single_document_may_start_with_a_separator():
    assert read("---\na: 1\n") == {"a": 1}


def test_syntax_error_has_the_line_and_column_of_the_problem():
    assert problems("start: a\nstates:\n  a: b\n    c: d\n") == [
        "flows/x.yaml:4:6: error: YAML syntax: mapping values are not allowed in this context"
    ]


def test_unclosed_flow_list_is_a_positioned_syntax_error():
    (problem,) = problems("start: a\nlist: [a, b\n")
    assert problem.startswith("flows/x.yaml:3:1: error: YAML syntax: ")
    assert "did not find expected ',' or ']'" in problem


def test_an_alias_to_its_own_container_is_an_error_not_a_hang():
    (problem,) = problems("a: &loop\n  - *loop\n")
    assert problem == "flows/x.yaml:1:4: error: an alias refers to the structure that contains it"


ALIAS_BOMB = "\n".join(
    ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
) + "\n"


def test_an_alias_bomb_is_refused():
    first = problems(ALIAS_BOMB)[0]
    assert first.startswith("flows/x.yaml:1:")
    assert "expands to more than 200000 values (too many aliases?)" in first


def test_an_alias_bomb_is_one_error():
    assert len(problems(ALIAS_BOMB)) == 1


def test_aliases_may_repeat_a_structure():
    data = read("base: &b {say: hi}\nother: *b\n")
    assert data["other"] == {"say": "hi"}


@pytest.mark.parametrize("word", ["on", "yes", "no", "off", "y", "n", "Yes", "NO", "On"])
def test_yaml_1_1_booleans_stay_text(word):
    data = read(f"{word}: {word}\nlist: [{word}]\n")
    assert data == {word: word, "list": [word]}


@pytest.mark.parametrize("word,value", [("true", True), ("false", False), ("True", True),
                                        ("FALSE", False)])
def test_only_true_and_false_are_booleans(word, value):
    assert read(f"end: {word}\n") == {"end": value}


def test_on_key_of_a_state_stays_the_word_on():
    data = read("s:\n  on:\n    - any: true\n      goto: x\n")
    assert list(data["s"]) == ["on"]
    assert data["s"]["on"][0]["any"] is True


@pytest.mark.parametrize("text", ["9:30", "2024-05-01", "2024-05-01 10:00:00", "1_000", "1e3"])
def test_times_dates_and_odd_numbers_stay_text(text):
    assert read(f"say: {text}\n") == {"say": text}


@pytest.mark.parametrize("text,value", [("010", 10), ("-5", -5), ("+7", 7), ("0o17", 15),
                                        ("0x1F", 31), ("1.10", 1.1)])
def test_numbers_read_as_yaml_1_2_numbers(text, value):
    assert read(f"n: {text}\n") == {"n": value}


def test_numbers_and_null_keep_their_types():
    assert read("a: 3\nb: 2.5\nc: ~\nd: null\ne: '3'\n") == {
        "a": 3, "b": 2.5, "c": None, "d": None, "e": "3"}


def test_merge_keys_copy_the_merged_mapping():
    data = read("""\
        base: &base {say: hi, end: true}
        state:
          <<: *base
          ask: question
        """)
    assert data["state"] == {"say": "hi", "end": True, "ask": "question"}
    assert "<<" not in data["state"]


def test_an_explicit_key_overrides_a_merged_one_without_a_duplicate_error():
    data = read("""\
        base: &base {say: hi, end: true}
        state:
          <<: *base
          say: bye
        """)
    assert data["state"]["say"] == "bye"
    assert data["state"]["end"] is True


def test_the_first_of_several_merged_mappings_wins():
    data = read("""\
        a: &a {say: from a}
        b: &b {say: from b, end: true}
        state:
          <<: [*a, *b]
        """)
    assert data["state"] == {"say": "from a", "end": True}


def test_merging_something_that_is_not_a_mapping_is_an_error():
    (problem,) = problems("a: &a [1]\nb:\n  <<: *a\n")
    assert "cannot merge" in problem
    assert problem.startswith("flows/x.yaml:3:")


def test_a_key_that_is_a_list_is_refused():
    (problem,) = problems("? [a, b]\n: 1\n")
    assert problem == "flows/x.yaml:1:3: error: a key must be a plain name"


def test_an_empty_text_loads_as_nothing():
    assert read("") is None
    assert read("# only a comment\n") is None


def test_a_bad_escape_in_quotes_is_a_positioned_error():
    (problem,) = problems('a: "\\xZZ"\n')
    assert problem.startswith("flows/x.yaml:1:")
    assert "YAML syntax" in problem


def test_control_characters_are_one_clean_diagnostic():
    with pytest.raises(YamlError) as caught:
        read("a: b\x01\n")
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.is_error
    assert "the control character U+0001 is not allowed" in diagnostic.message


def test_control_character_error_is_one_line_at_its_position():
    with pytest.raises(YamlError) as caught:
        read("start: a\nsay: b\x01\n")
    (diagnostic,) = caught.value.diagnostics
    assert "\n" not in str(diagnostic)
    assert (diagnostic.pos.line, diagnostic.pos.col) == (2, 7)
