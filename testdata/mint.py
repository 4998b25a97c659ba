# Makes vectors.json: tokens and password hashes minted by the Python tools
# scopeguard must interoperate with, for the Go tests to check. Not run by
# the tests; rerun by hand (Debian: python3-jwt python3-passlib):
#   /usr/bin/python3 testdata/mint.py > testdata/vectors.json
import base64, hashlib, json
import jwt  # PyJWT, as the FastAPI example uses it
from passlib.hash import pbkdf2_sha256

KEY = "09d25e094faa6ca2556c818166b7a9563b93f7099f6f0f4caa6cf63b88e8d3e7"  # the FastAPI example's
EXP = 1700001800  # the tests run their clock at 1700000000

def ab64(b):
    return base64.b64encode(b).decode().rstrip("=").replace("+", ".")

salt = bytes(range(16))
out = {
    "key": KEY,
    "now": 1700000000,
    "tokens": [
        # exactly what the FastAPI example's create_access_token makes
        {"name": "fastapi", "sub": "johndoe", "scopes": ["me", "items"],
         "token": jwt.encode({"sub": "johndoe", "scopes": ["me", "items"], "exp": EXP}, KEY, algorithm="HS256")},
        {"name": "pyjwt scope claim", "sub": "johndoe", "scopes": ["me"],
         "token": jwt.encode({"sub": "johndoe", "scope": "me", "iat": EXP - 1800, "exp": EXP}, KEY, algorithm="HS256")},
        {"name": "pyjwt extra header and claims", "sub": "alice", "scopes": [],
         "token": jwt.encode({"sub": "alice", "exp": EXP + 0.5, "nbf": EXP - 3600, "aud": ["x"]}, KEY,
                             algorithm="HS256", headers={"kid": "https://attacker.example/key"})},
    ],
    "hashes": [
        # passlib's own output, to verify in Go
        {"name": "passlib 1000 rounds", "password": "correct horse", "hash": pbkdf2_sha256.using(rounds=1000).hash("correct horse")},
        {"name": "passlib 600000 rounds", "password": "secret", "hash": pbkdf2_sha256.using(rounds=600000).hash("secret")},
        # computed with hashlib alone, salt 00 01 .. 0f, to compare Go's encoder against
        {"name": "hashlib fixed salt", "password": "password", "salt_hex": salt.hex(),
         "hash": "$pbkdf2-sha256$1000$%s$%s" % (ab64(salt), ab64(hashlib.pbkdf2_hmac("sha256", b"password", salt, 1000, 32)))},
    ],
}
for h in out["hashes"]:
    assert pbkdf2_sha256.verify(h["password"], h["hash"]), h["name"]
print(json.dumps(out, indent=1))
