"""Encrypted text search through `cipherdoc serve` with pymongo and
pymongocrypt (libmongocrypt 1.21), unmodified: explicit `String` payloads
inserted through an auto-encrypting client with bypass_query_analysis, and
explicit prefix, suffix and substring find payloads queried with `$expr`
(`$encStrStartsWith`, `$encStrEndsWith`, `$encStrContains`), each result
compared with plaintext matching under the fields' folding."""

import unicodedata
import unittest

from pymongo.encryption import Algorithm, QueryType
from pymongo.encryption_options import StringOpts

import common

STRING = Algorithm.STRING

# `name`: prefix and suffix 2..8, case- and diacritic-insensitive;
# `bio`: substring 3..6 of values up to 40 characters, case-insensitive.
NAME_OPTS = StringOpts(
    prefix={"strMinQueryLength": 2, "strMaxQueryLength": 8},
    suffix={"strMinQueryLength": 2, "strMaxQueryLength": 8},
    case_sensitive=False, diacritic_sensitive=False)
BIO_OPTS = StringOpts(
    substring={"strMaxLength": 40, "strMinQueryLength": 3, "strMaxQueryLength": 6},
    case_sensitive=False, diacritic_sensitive=True)

FIELDS = [
    {"path": "name", "bsonType": "string", "keyId": None, "queries": [
        {"queryType": "prefix", "contention": 0, "strMinQueryLength": 2, "strMaxQueryLength": 8,
         "caseSensitive": False, "diacriticSensitive": False},
        {"queryType": "suffix", "contention": 0, "strMinQueryLength": 2, "strMaxQueryLength": 8,
         "caseSensitive": False, "diacriticSensitive": False},
    ]},
    {"path": "bio", "bsonType": "string", "keyId": None, "queries": {
        "queryType": "substring", "contention": 8, "strMaxLength": 40, "strMinQueryLength": 3,
        "strMaxQueryLength": 6, "caseSensitive": False, "diacriticSensitive": True}},
]

PEOPLE = [
    ("Lovelace", "analyst of engines"),
    ("LOVETT", "Engineer, early riser"),
    ("Lövgren", "Café owner"),
    ("Loveday", "writes about café culture"),
    ("Babbage", "built the difference engine"),
    ("Grace", "a compiler writer"),
    ("Grâce", "another compiler writer"),
    ("Hopper", "COBOL and compilers"),
    ("Ada", "poet of science"),
]


def fold_name(s):
    # Case- and diacritic-insensitive for the Latin letters above: strip
    # combining marks after canonical decomposition, then lower-case
    # (libmongocrypt folds with Unicode 8.0 tables; these letters agree).
    return "".join(c for c in unicodedata.normalize("NFD", s)
                   if not unicodedata.combining(c)).lower()


def fold_bio(s):
    # Case-insensitive, diacritic-sensitive.
    return s.lower()


class TextSuite(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.q = common.Qe("text")
        cls.dbname = common.db_name("text")
        cls.q.plain.drop_database(cls.dbname)
        cls.q.key_vault.drop()
        db = cls.q.plain[cls.dbname]
        _, ef = cls.q.ce.create_encrypted_collection(db, "people", {"fields": FIELDS}, "local")
        cls.keys = {f["path"]: f["keyId"] for f in ef["fields"]}
        auto = cls.q.auto[cls.dbname]
        for i, (name, bio) in enumerate(PEOPLE):
            auto.people.insert_one({
                "_id": i,
                "name": cls.enc(name, "name", NAME_OPTS, contention_factor=0),
                "bio": cls.enc(bio, "bio", BIO_OPTS, contention_factor=8),
            })

    @classmethod
    def tearDownClass(cls):
        cls.q.plain.drop_database(cls.dbname)
        cls.q.plain.drop_database(cls.q.key_vault.database.name)
        cls.q.close()

    @classmethod
    def enc(cls, value, path, opts, **kw):
        return cls.q.ce.encrypt(value, STRING, key_id=cls.keys[path], string_opts=opts, **kw)

    def find(self, op, arg, path, payload):
        auto = self.q.auto[self.dbname]
        return sorted(d["_id"] for d in auto.people.find(
            {"$expr": {op: {"input": "$" + path, arg: payload}}}))

    def test_stored_values_are_text_blobs_and_decrypt(self):
        plain = self.q.plain[self.dbname]
        raw = plain.people.find_one({"_id": 0})
        self.assertEqual(raw["name"].subtype, 6)
        self.assertEqual(raw["name"][0], 17)  # FLE2IndexedTextEncryptedValue
        self.assertEqual(raw["bio"][0], 17)
        self.assertGreater(len(raw["__safeContent__"]), 2)
        auto = self.q.auto[self.dbname]
        for d in auto.people.find({}):
            self.assertEqual((d["name"], d["bio"]), PEOPLE[d["_id"]])

    def test_prefix_and_suffix_match_plaintext_folding(self):
        for query in ["Lo", "lov", "LOVE", "löv", "lovg", "gra", "Grâ", "ba", "zz", "lovelace"]:
            payload = self.enc(query, "name", NAME_OPTS, query_type=QueryType.PREFIX, contention_factor=0)
            want = [i for i, (n, _) in enumerate(PEOPLE) if fold_name(n).startswith(fold_name(query))]
            self.assertEqual(self.find("$encStrStartsWith", "prefix", "name", payload), want, query)
        for query in ["ce", "ACE", "âce", "er", "ren", "da", "zz"]:
            payload = self.enc(query, "name", NAME_OPTS, query_type=QueryType.SUFFIX, contention_factor=0)
            want = [i for i, (n, _) in enumerate(PEOPLE) if fold_name(n).endswith(fold_name(query))]
            self.assertEqual(self.find("$encStrEndsWith", "suffix", "name", payload), want, query)

    def test_substring_matches_plaintext_folding_at_contention_8(self):
        for query in ["engin", "ENG", "café", "cafe", "compil", "riter", "xyz", "of s"]:
            payload = self.enc(query, "bio", BIO_OPTS, query_type=QueryType.SUBSTRING, contention_factor=8)
            want = [i for i, (_, b) in enumerate(PEOPLE) if fold_bio(query) in fold_bio(b)]
            self.assertEqual(self.find("$encStrContains", "substring", "bio", payload), want, query)

    def test_query_payload_for_the_wrong_field_finds_nothing(self):
        # A prefix payload made with bio's key is not one of name's tags.
        payload = self.q.ce.encrypt("Lov", STRING, key_id=self.keys["bio"], string_opts=NAME_OPTS,
                                    query_type=QueryType.PREFIX, contention_factor=0)
        self.assertEqual(self.find("$encStrStartsWith", "prefix", "name", payload), [])


if __name__ == "__main__":
    unittest.main()
