"""Text-search find payloads from libmongocrypt itself (through pymongocrypt),
for tests/text_peer.rs: reads a JSON request on stdin, prints a JSON answer.

Request: {"key_document": <Extended JSON key document, wrapped with a local
master key of 96 zero bytes>, "cases": [{"value": str, "query_type":
"prefix"|"suffix"|"substring", "string_opts": {...}, "contention": int}]}.
Answer: one entry per case, {"blob": hex} (the subtype-18 payload's bytes)
or {"error": libmongocrypt's message}. Explicit encryption of a find is
deterministic given the key and the value, so the bytes show how
libmongocrypt folded the value.
"""

import json
import sys

import bson
from bson import json_util
from bson.codec_options import CodecOptions
from bson.binary import UuidRepresentation
from pymongocrypt.errors import MongoCryptError
from pymongocrypt.options import MongoCryptOptions
from pymongocrypt.synchronous.explicit_encrypter import ExplicitEncrypter
from pymongocrypt.synchronous.state_machine import MongoCryptCallback

OPTS = CodecOptions(uuid_representation=UuidRepresentation.STANDARD)


class KeyVault(MongoCryptCallback):
    """Answers libmongocrypt's key lookups with the one key document."""

    def __init__(self, key_doc):
        self.key = bson.encode(key_doc, codec_options=OPTS)

    def kms_request(self, kms_context):
        raise RuntimeError("no KMS is needed with a local master key")

    def collection_info(self, database, filter):
        raise RuntimeError("not used by explicit encryption")

    def mark_command(self, database, cmd):
        raise RuntimeError("not used by explicit encryption")

    def fetch_keys(self, filter):
        yield self.key

    def insert_data_key(self, data_key):
        raise RuntimeError("not used")

    def bson_encode(self, doc):
        return bson.encode(doc, codec_options=OPTS)

    def close(self):
        pass


def main():
    req = json.load(sys.stdin)
    key_doc = json_util.loads(json.dumps(req["key_document"]), json_options=json_util.JSONOptions(uuid_representation=UuidRepresentation.STANDARD))
    key_id = key_doc["_id"].bytes if hasattr(key_doc["_id"], "bytes") else bytes(key_doc["_id"])
    enc = ExplicitEncrypter(
        KeyVault(key_doc),
        MongoCryptOptions({"local": {"key": b"\x00" * 96}}),
    )
    out = []
    for c in req["cases"]:
        try:
            doc = enc.encrypt(
                bson.encode({"v": c["value"]}),
                "string",
                key_id=key_id,
                query_type=c["query_type"],
                contention_factor=c["contention"],
                string_opts=bson.encode(c["string_opts"]),
            )
            out.append({"blob": bytes(bson.decode(doc)["v"]).hex()})
        except MongoCryptError as e:
            out.append({"error": str(e)})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
