//! Detection from `INFO` and `CONFIG GET` answers as Redis gives them (7.0 is what CI
//! runs; the 7.2 answers are those of a 7.2 server, for the WAITAOF path).

use super::detect::Facts;
use super::Durability;
use std::collections::HashMap;

fn info(version: &str, aof: bool, replicas: &[&str]) -> String {
    let mut s = format!(
        "# Server\r\nredis_version:{version}\r\nredis_mode:standalone\r\n\r\n\
         # Persistence\r\nloading:0\r\naof_enabled:{}\r\n\r\n\
         # Replication\r\nrole:master\r\nconnected_slaves:{}\r\n",
        u8::from(aof),
        replicas.len()
    );
    for (i, state) in replicas.iter().enumerate() {
        s.push_str(&format!(
            "slave{i}:ip=127.0.0.1,port={},state={state},offset=1234,lag=0\r\n",
            7000 + i
        ));
    }
    s.push_str("master_failover_state:no-failover\r\nmaster_repl_offset:1234\r\n");
    s
}

fn config(appendonly: &str, fsync: &str) -> Result<HashMap<String, String>, String> {
    Ok([
        ("appendonly", appendonly),
        ("appendfsync", fsync),
        ("appendfilename", "appendonly.aof"),
        ("appenddirname", "appendonlydir"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect())
}

fn decide(info: &str, config: Result<HashMap<String, String>, String>) -> Durability {
    Facts::parse(info, config).decide()
}

#[test]
fn redis_7_2_with_aof_waits_for_the_aof_and_every_online_replica() {
    let d = decide(&info("7.2.4", true, &[]), config("yes", "everysec"));
    assert_eq!(
        d,
        Durability::WaitAof {
            local: 1,
            replicas: 0
        }
    );
    let d = decide(
        &info("7.2.4", true, &["online", "wait_bgsave"]),
        config("yes", "everysec"),
    );
    assert_eq!(
        d,
        Durability::WaitAof {
            local: 1,
            replicas: 1
        }
    );
    // CONFIG refused: WAITAOF needs no fsync policy, INFO says the AOF is on.
    let d = decide(&info("8.0.1", true, &[]), Err("NOPERM".into()));
    assert_eq!(d.name(), "waitaof");
}

#[test]
fn replicas_without_waitaof_mean_wait() {
    let d = decide(
        &info("7.0.15", true, &["online"]),
        config("yes", "everysec"),
    );
    assert_eq!(d, Durability::WaitReplicas(1));
    // 7.2 without AOF: WAITAOF would need the replicas' AOF; WAIT needs only their memory.
    let d = decide(
        &info("7.2.0", false, &["online", "online"]),
        config("no", "everysec"),
    );
    assert_eq!(d, Durability::WaitReplicas(2));
    assert!(d.describe().contains("WAIT 2"), "{}", d.describe());
}

#[test]
fn appendfsync_always_without_replicas_is_fsync_always() {
    let d = decide(&info("7.0.15", true, &[]), config("yes", "always"));
    assert_eq!(d, Durability::FsyncAlways);
    assert!(d.holds());
}

#[test]
fn everysec_says_plainly_what_can_be_paid_twice() {
    let d = decide(
        &info("7.0.15", true, &["wait_bgsave"]),
        config("yes", "everysec"),
    );
    assert!(!d.holds());
    let text = d.describe();
    assert!(
        text.contains(
            "A host crash or failover can lose up to ~1 s of writes; a job submitted in \
             that window can be submitted again (paid twice)"
        ),
        "{text}"
    );
    assert!(text.contains("appendfsync everysec"), "{text}");
    assert!(text.contains("paid twice"), "{text}");
    assert!(text.contains("7.0.15 has no WAITAOF"), "{text}");
}

#[test]
fn aof_off_and_unknown_policies_are_no_guarantee_with_their_reason() {
    let d = decide(&info("7.0.15", false, &[]), config("no", "everysec"));
    let text = d.describe();
    assert!(text.contains("AOF is off"), "{text}");
    assert!(text.contains("since the last RDB snapshot"), "{text}");
    let d = decide(
        &info("7.0.15", true, &[]),
        Err("NOPERM this user has no permissions to run the 'config|get' command".into()),
    );
    let text = d.describe();
    assert_eq!(d.name(), "none");
    assert!(text.contains("fsync policy is unknown"), "{text}");
    assert!(text.contains("NOPERM"), "{text}");
    let d = decide(&info("6.2.14", true, &[]), config("yes", "no"));
    assert!(d.describe().contains("appendfsync no"), "{}", d.describe());
}
