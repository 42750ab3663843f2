//! What storing a post costs the sled backend alone, as the server's writer stores them: batches
//! of posts spread over many groups, each post checked for a copy first (`message_seq`), each
//! batch committed and flushed. Prints the process's CPU time per post, and suits
//! `valgrind --tool=callgrind`, whose instruction counts do not depend on the machine's load.
//!
//! ```sh
//! cargo run --release -p confide-server --example storage_commit -- [GROUPS] [BATCH] [POSTS]
//! ```
//!
//! Defaults: 100 groups, 100 posts per batch, 100,000 posts (the shape of `confide-bench
//! durable`'s 100 × 10 run).

use confide_protocol::envelope::Envelope;
use confide_protocol::frames::StoredMessage;
use confide_protocol::{DeviceId, Epoch, GroupId, OpHash, Seq, Signature, Timestamp};
use confide_server::storage::{SledStorage, Storage, Write};

/// Ciphertext bytes of each post (a short text after padding and sealing).
const CIPHERTEXT: usize = 300;

/// User plus system CPU seconds of this process so far, from `/proc/self/stat`.
fn cpu_seconds() -> Result<f64, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces) start after its closing bracket.
    let rest = stat.rsplit_once(')').ok_or("no command name")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64, Box<dyn std::error::Error>> {
        Ok(fields.get(i).ok_or("short stat")?.parse::<f64>()?)
    };
    // utime and stime, in clock ticks (USER_HZ, which Linux fixes at 100 for what it reports
    // to user space on the architectures this runs on).
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

fn post(group: GroupId, seq: u64, n: u64) -> StoredMessage {
    StoredMessage {
        seq: Seq(seq),
        received_at: Timestamp(1_700_000_000_000 + n),
        envelope: Envelope {
            v: 1,
            group,
            epoch: Epoch(1),
            epoch_hash: OpHash([2; 32]),
            sender: DeviceId([3; 32]),
            iteration: u32::try_from(seq).unwrap_or(u32::MAX),
            franking_tag: [4; 32],
            ciphertext: vec![5; CIPHERTEXT],
            signature: Signature([6; 64]),
        },
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, default: u64| -> Result<u64, Box<dyn std::error::Error>> {
        Ok(match std::env::args().nth(i) {
            Some(a) => a.parse()?,
            None => default,
        })
    };
    let (groups, batch, total) = (arg(1, 100)?.max(1), arg(2, 100)?.max(1), arg(3, 100_000)?);
    let dir = tempfile::tempdir()?;
    let db = SledStorage::open(dir.path())?;
    let mut last = vec![0u64; usize::try_from(groups)?];
    let started = cpu_seconds()?;
    let mut n = 0u64;
    while n < total {
        let mut writes = Vec::new();
        for _ in 0..batch {
            let g = n % groups;
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&g.to_be_bytes());
            let group = GroupId(id);
            let seq = &mut last[usize::try_from(g)?];
            *seq += 1;
            let message = post(group, *seq, n);
            // The server's check for a copy already stored, once per post.
            if db
                .message_seq(&group, &message.envelope.message_id())?
                .is_some()
            {
                return Err("a new post was found stored".into());
            }
            writes.push(Write::Message { group, message });
            n += 1;
        }
        db.commit(&writes)?;
    }
    let cpu = cpu_seconds()? - started;
    println!(
        "{groups} groups, {batch} posts per batch, {total} posts: {:.1} µs of CPU per post",
        cpu * 1e6 / total as f64
    );
    Ok(())
}
