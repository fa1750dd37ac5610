"""The code-aware analyser: identifiers, paths, non-ASCII text, query terms, code-shaped queries."""

from __future__ import annotations

import pytest

from codeintel.core import lexical
from codeintel.core.lexical import Lexicon


class TestIdentifiers:
    @pytest.mark.parametrize(
        ("word", "parts"),
        [
            ("parse_args", ["parse", "args"]),
            ("parseArgs", ["parse", "args"]),
            ("ParseArgs", ["parse", "args"]),
            ("MAX_RETRIES", ["max", "retries"]),
            ("HTTPServer", ["http", "server"]),  # an acronym ends before the next word
            ("XMLHttpRequest", ["xml", "http", "request"]),
            ("getHTTPResponse2", ["get", "http", "response", "2"]),
            ("utf8_decode", ["utf", "8", "decode"]),
            ("base64encode", ["base", "64", "encode"]),
            ("__init__", ["init"]),
            ("x", ["x"]),
            ("HTTP", ["http"]),
        ],
    )
    def test_split(self, word: str, parts: list[str]) -> None:
        assert lexical.split_identifier(word) == parts

    def test_whole_identifier_comes_first_joined(self) -> None:
        assert lexical.tokens("parse_args") == ["parseargs", "parse", "args"]
        assert lexical.tokens("HTTPServer") == ["httpserver", "http", "server"]

    def test_snake_and_camel_spellings_share_the_whole_token(self) -> None:
        assert lexical.tokens("parse_args")[0] == lexical.tokens("parseArgs")[0] == "parseargs"

    def test_plain_words_are_one_token_each(self) -> None:
        assert lexical.tokens("open a connection") == ["open", "a", "connection"]

    def test_dotted_paths_and_calls_split_on_punctuation(self) -> None:
        assert lexical.tokens("os.path.join(a, b)") == ["os", "path", "join", "a", "b"]
        assert lexical.tokens("f(") == ["f"]
        assert lexical.tokens("Config::load_file") == [
            "config",
            "loadfile",
            "load",
            "file",
        ]

    def test_without_split_identifiers_stay_whole(self) -> None:
        plain = Lexicon(split=False)
        assert lexical.tokens("parse_args HTTPServer", plain) == ["parse_args", "httpserver"]


class TestPaths:
    def test_directories_file_name_and_extension(self) -> None:
        assert lexical.tokens("src/codeintel/core/hits.py") == [
            "src",
            "codeintel",
            "core",
            "hits",
            "py",
        ]

    def test_compound_file_names_split(self) -> None:
        assert lexical.tokens("web/HttpClient-v2/test_retry_policy.ts") == [
            "web",
            "httpclient",
            "http",
            "client",
            "v2",
            "v",
            "2",
            "testretrypolicy",
            "test",
            "retry",
            "policy",
            "ts",
        ]


class TestNonAscii:
    def test_unicode_identifiers_split_on_case_and_underscore(self) -> None:
        assert lexical.tokens("größe_berechnen") == ["größeberechnen", "größe", "berechnen"]
        assert lexical.tokens("ÜberKlasse") == ["überklasse", "über", "klasse"]
        assert lexical.tokens("数据_处理") == ["数据处理", "数据", "处理"]  # letters without case

    def test_full_width_and_decomposed_forms_are_normalised(self) -> None:
        full_width = "\uff26\uff55\uff4c\uff4c\uff37\uff49\uff44\uff54\uff48"  # FullWidth
        assert lexical.tokens(full_width) == ["fullwidth", "full", "width"]
        assert lexical.tokens("cafe\u0301") == lexical.tokens("caf\u00e9") == ["café"]

    def test_greek_and_cyrillic_camel_case(self) -> None:
        assert lexical.split_identifier("получитьДанные") == ["получить", "данные"]
        assert lexical.split_identifier("ΑλφαΒήτα") == ["αλφα", "βήτα"]

    def test_tokenizer_string_folds_diacritics_and_stems(self) -> None:
        assert lexical.DEFAULT.tokenizer().startswith("porter unicode61 remove_diacritics 2")
        assert "porter" not in Lexicon(stem=False).tokenizer()


class TestExactMarkers:
    def test_symbols_and_paths_carry_exact_markers(self) -> None:
        assert lexical.tokens("Store.make_keys", exact=True) == [
            "store_",
            "store",
            "make_keys_",
            "makekeys_",
            "makekeys",
            "make",
            "keys",
        ]
        assert lexical.tokens("_kwargs", exact=True)[:2] == ["_kwargs_", "kwargs_"]

    def test_code_queries_name_their_code_words(self) -> None:
        assert lexical.exact_terms("make_keys") == ["make_keys_", "makekeys_"]
        assert lexical.exact_terms("os.path") == ["os_", "path_"]
        assert lexical.exact_terms("call run() twice") == ["run_"]
        assert lexical.exact_terms("std::vector of ints") == ["std_", "vector_"]
        # the plain words around the code name nothing
        assert lexical.exact_terms("the Request.url string") == ["request_", "url_"]

    def test_a_sentence_mentioning_code_names_nothing(self) -> None:
        # in a question, a named type is usually what the answer uses, not what it is
        assert lexical.query_kind("Convert a `GaussianInteger` object to `dtype`.") == "code"
        assert lexical.exact_terms("Convert a `GaussianInteger` object to `dtype`.") == []

    def test_keyword_queries_name_one_symbol_in_words(self) -> None:
        assert lexical.exact_terms("wait for depletion") == [
            "wait_for_depletion_",
            "waitfordepletion_",
        ]
        assert lexical.exact_terms("label") == ["label_"]

    def test_questions_name_nothing(self) -> None:
        assert lexical.exact_terms("Return the number of items in the queue") == []

    def test_no_markers_without_the_option(self) -> None:
        assert lexical.exact_terms("make_keys", Lexicon(exact=False)) == []


class TestQueries:
    def test_stop_words_are_dropped(self) -> None:
        terms = lexical.query_terms("Return the number of items in the queue")
        assert terms == ["return", "number", "items", "queue"]

    def test_stop_words_stay_when_nothing_else_is_left(self) -> None:
        assert lexical.query_terms("what is this") == ["what", "is", "this"]

    def test_terms_are_distinct_and_bounded(self) -> None:
        assert lexical.query_terms("retry retry parse_args") == [
            "retry",
            "parseargs",
            "parse",
            "args",
        ]
        many = " ".join(f"w{i}x" for i in range(200))
        assert len(lexical.query_terms(many)) == lexical.MAX_QUERY_TERMS

    def test_match_quotes_every_term(self) -> None:
        assert lexical.fts_match(["near", "and"]) == '"near" OR "and"'

    @pytest.mark.parametrize(
        "query",
        [
            "parse_args",
            "parseArgs",
            "HTTPServer",
            "os.path",
            "run(",
            "std::vector",
            "self->next",
            "__init__",
            "utf8",
            "ÜberKlasse",
        ],
    )
    def test_code_shaped_queries(self, query: str) -> None:
        assert lexical.looks_like_code(query)

    @pytest.mark.parametrize(
        "query",
        [
            "Read a file",
            "Return the top 10 items, e.g. the first.",
            "HTTP status of the response",
            "version 3.14",
            "café",
        ],
    )
    def test_questions_in_words(self, query: str) -> None:
        assert not lexical.looks_like_code(query)

    @pytest.mark.parametrize(
        ("query", "kind"),
        [
            ("parse_args", "code"),
            ("f(x)", "code"),
            ("retry policy", "keywords"),
            ("wait for depletion", "keywords"),
            ("spawn", "keywords"),
            ("what is this", "prose"),
            ("Return the number of items in the queue.", "prose"),
            ("", "prose"),
        ],
    )
    def test_query_kinds(self, query: str, kind: str) -> None:
        assert lexical.query_kind(query) == kind


@pytest.mark.parametrize(
    ("query", "lone"),
    [
        ("parse_args", True),
        ("HTTPServer", True),
        ("os.path.join(", True),
        ("utf8", True),
        ("  getUserName()  ", True),
        ("parse_args with defaults", False),  # code inside a longer query: "code", not a name
        ("parse args", False),
        ("retry", False),  # one plain word is keywords, not code
        ("how do I call parse_args?", False),
        ("naïve_façade", True),
    ],
)
def test_a_lone_name_is_one_code_token_and_nothing_else(query: str, lone: bool) -> None:
    assert lexical.is_lone_name(query) is lone
