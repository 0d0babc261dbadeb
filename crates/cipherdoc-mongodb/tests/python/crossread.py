"""The official stack's side of the cross-reading test
(crates/cipherdoc/tests/mongodb_crossread.rs): pymongo with pymongocrypt
(libmongocrypt, automatic decryption, explicit payloads through an
auto-encrypting client with bypass_query_analysis) writes a database that
cipherdoc's models then read through the MongoDB engine, or reads one that
they wrote.

  crossread.py write   makes the data keys (keyAltNames
                       "<collection>.<path>", as cipherdoc names them),
                       creates the encrypted collection with the fields
                       given, and inserts the documents given, each
                       encrypted field encrypted by libmongocrypt.
  crossread.py read    reads every document (decrypted by libmongocrypt),
                       finds by an equality value and by a range, with
                       payloads libmongocrypt makes from the collection's
                       encryptedFields as listCollections reports them, and
                       prints what it found as canonical extended JSON.

Environment (set by the Rust test):
  XR_URI         a mongodb:// URI of `cipherdoc serve`
  XR_DB          the database (the key vault is <XR_DB>.__keyVault)
  XR_COLL        the collection
  XR_MASTER_KEY  the 96-byte local master key, hex
  XR_INPUT       write: {"fields": [...], "docs": [...]}; read: {"eq":
                 {"path", "value"}, "range": {"path", "gte", "lt"}}, both
                 canonical extended JSON
"""

import os
import sys

from bson import json_util
from bson.binary import STANDARD
from bson.codec_options import CodecOptions
from bson.json_util import CANONICAL_JSON_OPTIONS
from pymongo import MongoClient
from pymongo.encryption import Algorithm, ClientEncryption, QueryType, RangeOpts
from pymongo.encryption_options import AutoEncryptionOpts

URI = os.environ["XR_URI"]
DB = os.environ["XR_DB"]
COLL = os.environ["XR_COLL"]
KMS = {"local": {"key": bytes.fromhex(os.environ["XR_MASTER_KEY"])}}
KV = DB + ".__keyVault"
OPTS = CodecOptions(uuid_representation=STANDARD)
INPUT = json_util.loads(os.environ["XR_INPUT"], json_options=CANONICAL_JSON_OPTIONS)


def query_of(field):
    q = field.get("queries")
    if isinstance(q, list):
        q = q[0] if q else None
    return q


def range_opts(q):
    return RangeOpts(min=q.get("min"), max=q.get("max"), sparsity=q.get("sparsity"),
                     trim_factor=q.get("trimFactor"), precision=q.get("precision"))


def encrypt(ce, field, value):
    q = query_of(field)
    key = field["keyId"]
    if q is None:
        return ce.encrypt(value, Algorithm.UNINDEXED, key_id=key)
    # An absent contention is the default of 8, as libmongocrypt reads it.
    cf = q.get("contention", 8)
    if q["queryType"] == "equality":
        return ce.encrypt(value, Algorithm.INDEXED, key_id=key, contention_factor=cf)
    if q["queryType"] == "range":
        return ce.encrypt(value, Algorithm.RANGE, key_id=key, contention_factor=cf, range_opts=range_opts(q))
    raise ValueError("query type %r is not part of this test" % q["queryType"])


def write(plain, ce, auto):
    plain[DB]["__keyVault"].create_index(
        "keyAltNames", unique=True, partialFilterExpression={"keyAltNames": {"$exists": True}})
    fields = []
    for f in INPUT["fields"]:
        f = dict(f)
        f["keyId"] = ce.create_data_key("local", key_alt_names=["%s.%s" % (COLL, f["path"])])
        fields.append(f)
    ce.create_encrypted_collection(plain[DB], COLL, {"fields": fields}, "local")
    by_path = {f["path"]: f for f in fields}
    for d in INPUT["docs"]:
        d = dict(d)
        for path, f in by_path.items():
            if path in d:
                d[path] = encrypt(ce, f, d[path])
        auto[DB][COLL].insert_one(d)
    print(json_util.dumps({"inserted": len(INPUT["docs"])}, json_options=CANONICAL_JSON_OPTIONS))


def read(plain, ce, auto):
    info = next(plain[DB].list_collections(filter={"name": COLL}))
    fields = {f["path"]: f for f in info["options"]["encryptedFields"]["fields"]}
    coll = auto[DB][COLL]
    everything = list(coll.find().sort("_id", 1))

    eq = INPUT["eq"]
    f = fields[eq["path"]]
    payload = ce.encrypt(eq["value"], Algorithm.INDEXED, key_id=f["keyId"], query_type=QueryType.EQUALITY,
                         contention_factor=query_of(f).get("contention", 8))
    by_eq = list(coll.find({eq["path"]: payload}).sort("_id", 1))

    r = INPUT["range"]
    f = fields[r["path"]]
    q = query_of(f)
    expr = ce.encrypt_expression(
        {"$and": [{r["path"]: {"$gte": r["gte"]}}, {r["path"]: {"$lt": r["lt"]}}]},
        Algorithm.RANGE, key_id=f["keyId"], query_type=QueryType.RANGE,
        contention_factor=q.get("contention", 8), range_opts=range_opts(q))
    by_range = list(coll.find(expr).sort("_id", 1))
    print(json_util.dumps({"all": everything, "eq": by_eq, "range": by_range},
                          json_options=CANONICAL_JSON_OPTIONS))


def main():
    plain = MongoClient(URI, uuidRepresentation="standard", serverSelectionTimeoutMS=10000)
    ce = ClientEncryption(KMS, KV, plain, OPTS)
    auto = MongoClient(
        URI, uuidRepresentation="standard", serverSelectionTimeoutMS=10000,
        auto_encryption_opts=AutoEncryptionOpts(KMS, KV, bypass_query_analysis=True),
    )
    try:
        {"write": write, "read": read}[sys.argv[1]](plain, ce, auto)
    finally:
        ce.close()
        auto.close()
        plain.close()


main()
