//! The media scripts: a stored payload made visible whole, once; an upload's URL recorded
//! with its batch, the first one kept. Key names come in the arguments (built by `Keys`).

/// Renames a fully written payload to its name, unless the payload is there already (a
/// producer racing with another, or enqueueing again after a crash: the same content
/// under the same name). ARGV: prefix, media_key, partial_key, length.
/// Returns 1 (stored), 0 (was there; the partial copy is dropped) or -1 (the partial copy
/// is not whole: it expired or was cut short).
pub(super) const MEDIA_COMMIT: &str = r#"
local key, part = ARGV[2], ARGV[3]
if redis.call('STRLEN', part) ~= tonumber(ARGV[4]) then
  redis.call('DEL', part)
  return -1
end
if redis.call('EXISTS', key) == 1 then
  redis.call('DEL', part)
  return 0
end
redis.call('RENAME', part, key)
redis.call('PERSIST', key)
return 1
"#;

/// Records the URL a provider's storage gave a payload of a batch, if none is recorded
/// yet, and returns the one recorded (so racing workers all use the first). A batch that
/// is gone (purged) is not recreated. ARGV: prefix, batch_key, field, url.
/// Returns the recorded URL, or nil when the batch is gone.
pub(super) const RECORD_UPLOAD: &str = r#"
local bkey, field = ARGV[2], ARGV[3]
if redis.call('EXISTS', bkey) == 0 then return false end
redis.call('HSETNX', bkey, field, ARGV[4])
return redis.call('HGET', bkey, field)
"#;
