"""The Lua scripts that change several keys at once, atomically, and how they are called.

A script is called by its SHA-1 (``EVALSHA``), in a pipeline or alone; Redis learns them
all when a node starts, and again if it has forgotten them (``NOSCRIPT``: a flushed
script cache).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

SEPARATOR = b"\x1f"
"""Between the fields of a packed record, whose first field is its node."""


class Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def queue(self, pipe: Pipeline, keys: list[str], args: list[Any]) -> None:
        pipe.evalsha(self.sha, len(keys), *keys, *args)

    async def __call__(self, redis: Redis, keys: list[str], args: list[Any]) -> Any:
        try:
            return await redis.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            await redis.script_load(self.source)
            return await redis.evalsha(self.sha, len(keys), *keys, *args)


RENEW = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
)
"""Extend a lease or lock held with token ARGV[1] by ARGV[2] ms; 0 if it is not held."""

RELEASE = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
)
"""Delete a lease or lock held with token ARGV[1]."""

LEAVE = Script(
    """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  return 1
end
return 0
"""
)
"""A node leaves: its lease (KEYS[1], token ARGV[1]) and its name in the nodes set."""

PUBLISH = Script(
    """
if redis.call('GET', KEYS[5]) ~= ARGV[5] then
  return 0
end
if ARGV[6] ~= 'claim' then
  local record = redis.call('HGET', KEYS[1], ARGV[1])
  if not record or string.sub(record, 1, #ARGV[7] + 1) ~= ARGV[7] .. '\\31' then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
local number = redis.call('INCR', KEYS[4])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'q', number, 'j', ARGV[3], 'r', ARGV[2])
return 1
"""
)
"""Set the record (ARGV[2]) of resource ARGV[1], full JID ARGV[3], in the account's hash
(KEYS[1]) and the node's set (KEYS[2]), and add the change, numbered (KEYS[4]), to the
stream (KEYS[3], trimmed to about ARGV[4] entries). A ``claim`` (ARGV[6]) sets it
whoever held the resource; an update only while node ARGV[7] holds it. Either only
while the node still holds its lease (KEYS[5], token ARGV[5]), so that a node that lost
it cannot leave a record that no cleanup would find."""

REMOVE = Script(
    """
redis.call('SREM', KEYS[2], ARGV[3])
local record = redis.call('HGET', KEYS[1], ARGV[1])
if record and string.sub(record, 1, #ARGV[2] + 1) == ARGV[2] .. '\\31' then
  redis.call('HDEL', KEYS[1], ARGV[1])
  local number = redis.call('INCR', KEYS[4])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'q', number, 'j', ARGV[3], 'n', ARGV[2])
  return record
end
return false
"""
)
"""Remove the record of resource ARGV[1] (full JID ARGV[3]) if node ARGV[2] holds it,
and add the change (as PUBLISH does); returns the record removed, or nil when another node has bound the
resource since (its record stays)."""

CLAIM = Script(
    """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
if redis.call('SET', KEYS[3], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return 1
end
return 0
"""
)
"""Take the cleanup lock (KEYS[3]) of node ARGV[1] as ARGV[2] for ARGV[3] ms, if the node
is still a member (KEYS[1]) and its lease (KEYS[2]) has expired."""

FINISH = Script(
    """
if redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return 0
end
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SREM', KEYS[1], ARGV[1])
end
redis.call('DEL', KEYS[2])
return 1
"""
)
"""The cleanup of node ARGV[1] is done: release its lock (KEYS[2], held as ARGV[2]) and,
unless the node holds a lease again (KEYS[3]), take it out of the nodes set (KEYS[1])."""

MOVE_INBOX = Script(
    """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -1
end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
"""
)
"""Move a dead node's inbox (KEYS[1]) aside (KEYS[2]): 1 if moved, 0 if there is none,
-1 if what an earlier cleanup moved aside is still there."""

TAKE_OVER = Script(
    """
local owner = redis.call('HGET', KEYS[1], 'node')
if owner ~= ARGV[1] then
  return false
end
if owner ~= '' and redis.call('EXISTS', KEYS[6]) == 1
    and not redis.call('ZSCORE', KEYS[5], ARGV[3]) then
  return false
end
redis.call('HSET', KEYS[1], 'node', ARGV[2])
redis.call('SREM', KEYS[3], ARGV[3])
redis.call('SADD', KEYS[4], ARGV[3])
redis.call('ZREM', KEYS[5], ARGV[3])
return {redis.call('HGETALL', KEYS[1]), redis.call('LRANGE', KEYS[2], 0, -1)}
"""
)
"""Take the resumable session ARGV[3] (hash KEYS[1], unacknowledged list KEYS[2]) for
node ARGV[2], if node ARGV[1] still holds it and either released it (''), has lost its
lease (KEYS[6]), or it waits in KEYS[5] (an earlier process of that node's name left
it): it moves from that node's set (KEYS[3]) to this one's (KEYS[4])
and stops waiting (KEYS[5]). Returns the hash and the list, or nil."""

WAIT = Script(
    """
if redis.call('HGET', KEYS[1], 'node') ~= ARGV[1] then
  return 0
end
local window = tonumber(redis.call('HGET', KEYS[1], 'window') or '0')
redis.call('ZADD', KEYS[2], 'NX', tonumber(ARGV[3]) + window, ARGV[2])
return 1
"""
)
"""Node ARGV[1] is dead: its resumable session ARGV[2] (hash KEYS[1]) waits, in the
sorted set KEYS[2], until its window closes (from ARGV[3], seconds since the epoch)."""

EXPIRE = Script(
    """
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due or tonumber(due) > tonumber(ARGV[2]) then
  return false
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], 'node', ARGV[4])
return {redis.call('HGETALL', KEYS[2]), redis.call('LRANGE', KEYS[3], 0, -1)}
"""
)
"""The window of waiting session ARGV[1] (in KEYS[1]) closed by ARGV[2]: mark it expired
(ARGV[4] as its node, hash KEYS[2]) and put it off to ARGV[3], so that if this node
dies before routing its list (KEYS[3]) again, another does. Returns both, or nil."""

ALL = (
    RENEW,
    RELEASE,
    LEAVE,
    PUBLISH,
    REMOVE,
    CLAIM,
    FINISH,
    MOVE_INBOX,
    TAKE_OVER,
    WAIT,
    EXPIRE,
)


async def load_all(redis: Redis) -> None:
    pipe = redis.pipeline(transaction=False)
    for script in ALL:
        pipe.script_load(script.source)
    await pipe.execute()
