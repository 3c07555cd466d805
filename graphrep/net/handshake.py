"""Who may connect: the cluster's secrets and the challenge-response that proves them.

Every connection opens with four frames (:mod:`graphrep.net.wire` encodes them)::

    dialer -> node   Hello      [cluster, dialer name, role, nonce_d]
    node -> dialer   Challenge  [ok, node name, reason, nonce_s, proof_s]
    dialer -> node   Auth       [proof_d]
    node -> dialer   Welcome    [ok, node name, reason]

``role`` is ``node`` (a peer, proving the cluster key) or a client's ``read`` or
``write`` (proving the token of that role). Both sides draw a fresh 16-byte nonce, and
each proof is an HMAC-SHA256, under the role's key, of the whole exchange: a label
(``node`` or ``dialer``, so that one side's proof is never valid as the other's), the
cluster id, both names, the role and both nonces. The node proves the key first, so a
dialer never sends its proof to an impostor; a proof recorded from one handshake fails
in any other, whose node nonce differs. Proofs are compared with
:func:`hmac.compare_digest`. A refused hello or proof closes the connection; the node
counts and logs it with the peer's address, never a secret.

:class:`Keys` holds what a node checks proofs with, read from the files the cluster
file names (``[security]``); :func:`generate` writes new ones (``graphrep cluster up``
does). A secret file that group or others may read is refused. A cluster file without
``[security]`` has no secrets: the handshake runs with an empty key, which anyone can
prove, and the node warns at start.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import trio

from graphrep.errors import AuthenticationFailed, ConfigError, FrameError, InvalidArgument
from graphrep.net.wire import (
    NONCE_BYTES,
    WIRE_VERSION,
    Challenge,
    FrameReader,
    Hello,
    decode_challenge,
    decode_welcome,
    encode_auth,
    encode_hello,
    frame,
)

__all__ = ["CLIENT_ROLES", "Keys", "dial", "generate", "proof", "read_secret",
           "secret_of", "secrets_in", "token_role"]

CLIENT_ROLES = ("read", "write")
"""A client token's roles: ``read`` (search, status) and ``write`` (also insert and
delete)."""

SECRET_FILES = {"cluster_key": "cluster.key", "write_token": "write.token",
                "read_token": "read.token"}
"""``[security]`` keys and the file names :func:`generate` gives them."""


def proof(key: bytes, side: str, cluster: str, dialer: str, node: str, role: str,
          nonce_d: bytes, nonce_s: bytes) -> bytes:
    """HMAC-SHA256 under ``key`` of one side's view of a handshake (``side``: ``node``
    or ``dialer``)."""
    msg = msgpack.packb([side, cluster, dialer, node, role, nonce_d, nonce_s],
                        use_bin_type=True)
    return hmac.new(key, msg, hashlib.sha256).digest()


def secret_of(role: str) -> str:
    """What a dialer of ``role`` proves, in words (for messages)."""
    return "cluster key" if role == "node" else f"{role} token"


def token_role(token: str) -> str:
    """The role a client token carries in its prefix (``read.…`` or ``write.…``)."""
    role, _, rest = token.partition(".")
    if role not in CLIENT_ROLES or not rest:
        raise InvalidArgument("a client token is 'read.<hex>' or 'write.<hex>', as `graphrep "
                              "cluster up` writes them in DIR/secrets/")
    return role


def read_secret(path: Path) -> str:
    """The secret in ``path`` (stripped), refusing a file that group or others may read."""
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the secret file {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"the secret file {path} may be read by group or others (mode "
                          f"{stat.S_IMODE(mode):o}); run `chmod 600 {path}`")
    if not text:
        raise ConfigError(f"the secret file {path} is empty")
    return text


@dataclass(frozen=True)
class Keys:
    """What a node proves itself with and checks others' proofs against: the cluster key
    (nodes) and the client tokens by role. All empty: no secrets configured."""

    cluster_key: bytes = b""
    tokens: dict[str, bytes] = field(default_factory=dict)
    configured: bool = False

    @classmethod
    def load(cls, files: dict[str, Path]) -> Keys:
        """Read the secret files named in ``[security]`` (see :data:`SECRET_FILES`)."""
        if not files:
            return cls()
        missing = sorted(set(SECRET_FILES) - set(files))
        if missing:
            raise ConfigError(f"[security] names no {', '.join(missing)}: name all three "
                              "secret files (`graphrep cluster up` writes them)")
        tokens = {}
        for role in CLIENT_ROLES:
            token = read_secret(files[f"{role}_token"])
            if token_role(token) != role:
                raise ConfigError(f"{files[f'{role}_token']} holds a {token_role(token)} "
                                  f"token where the {role} token belongs")
            tokens[role] = token.encode()
        return cls(read_secret(files["cluster_key"]).encode(), tokens, True)

    def key_for(self, role: str) -> bytes | None:
        """The key a dialer of ``role`` must prove (None: no such role here)."""
        if role == "node":
            return self.cluster_key
        if not self.configured:
            return b"" if role in CLIENT_ROLES else None
        return self.tokens.get(role)


def generate(directory: Path) -> dict[str, Path]:
    """Write a new cluster key and read and write tokens into ``directory`` (mode 600,
    never over an existing file); returns the ``[security]`` paths."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    values = {"cluster_key": secrets.token_hex(32), "write_token":
              f"write.{secrets.token_hex(32)}", "read_token": f"read.{secrets.token_hex(32)}"}
    out = {}
    for key, name in SECRET_FILES.items():
        path = directory / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise ConfigError(f"{path} exists: move the old secrets aside first") from None
        with os.fdopen(fd, "w") as f:
            f.write(values[key] + "\n")
        out[key] = path
    return out


def secrets_in(directory: Path) -> dict[str, Path]:
    """The ``[security]`` paths of the secret files in ``directory``: the ones there, or
    new ones (:func:`generate`) if any is missing."""
    if all((directory / name).exists() for name in SECRET_FILES.values()):
        return {key: directory / name for key, name in SECRET_FILES.items()}
    return generate(directory)


async def dial(stream: trio.abc.Stream, *, cluster: str, name: str, node: str, role: str,
               key: bytes, timeout: float, max_frame_bytes: int = 1 << 16) -> FrameReader:
    """The dialer's side of the handshake on a fresh connection to ``node``; returns the
    connection's frame reader (``max_frame_bytes``) for what follows. Raises
    :class:`~graphrep.errors.HandshakeRefused` (or its subclass
    :class:`~graphrep.errors.AuthenticationFailed`) when refused, :class:`FrameError`
    for a peer that does not speak it, ``trio.TooSlowError`` after ``timeout``."""
    nonce_d = os.urandom(NONCE_BYTES)
    await stream.send_all(frame(encode_hello(Hello(WIRE_VERSION, cluster, name, role,
                                                   nonce_d))))
    reader = FrameReader(stream, max_frame_bytes)
    with trio.fail_after(timeout):
        challenge: Challenge = decode_challenge(await _next(reader, node))
        expected = proof(key, "node", cluster, name, challenge.name, role, nonce_d,
                         challenge.nonce)
        if challenge.name != node or not hmac.compare_digest(challenge.proof, expected):
            raise AuthenticationFailed(
                f"{node!r} did not prove the {secret_of(role)} this side holds: the two sides use "
                "different secrets (or it is not that node)")
        await stream.send_all(frame(encode_auth(proof(
            key, "dialer", cluster, name, challenge.name, role, nonce_d, challenge.nonce))))
        decode_welcome(await _next(reader, node))
    return reader


async def _next(reader: FrameReader, node: str) -> bytes:
    body = await reader.next()
    if body is None:
        raise FrameError(f"{node} closed the connection during the handshake")
    return body
