//! Micro-benchmarks of the cryptography on every message's path, each beside the bare
//! primitive it is built on (the baseline):
//!
//! - encrypt-and-sign one message (`Envelope::seal`) — baseline: one Ed25519 signature;
//! - verify-and-decrypt one message (`Envelope::open`) — baseline: one Ed25519 verification;
//! - verify only (`Envelope::verify`, what the server does per post);
//! - seal one sender key to one device (HPKE + inner signature) — baseline: one Ed25519
//!   signature;
//! - verify a device list of 1 and 8 devices, the link key agreement, and sealing and opening a
//!   full-size (512 KiB) link bundle — baselines: one Ed25519 verification, sealing a sender key;
//! - the group-work tools: checking a full resource library as a reader does (parse, validate,
//!   commitment), finding the next meeting of a full schedule, and sealing and opening a full
//!   safety plan to one's own other device — baselines: one Ed25519 verification, sealing a
//!   sender key.
//!
//! - post-quantum sealing (issue 18): sealing and opening one sender key with X-Wing beside the
//!   same with X25519 (version 1, the baseline), and what a removal rekey and a join cost a
//!   client in a group of 12 members with each suite.
//!
//! Run with `cargo bench -p confide-bench`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use confide_protocol::envelope::Envelope;
use confide_protocol::seal::{self, SealKind};
use confide_protocol::sender_key::{ReceiverChain, SenderChain};
use confide_protocol::{DeviceIdentity, Epoch, EpochRef, GroupId, OpHash};

fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// Message bodies that fill the 256-byte and 4 KiB padding buckets.
const BODIES: [(usize, &str); 2] = [(200, "256 B bucket"), (4_000, "4 KiB bucket")];

fn epoch() -> EpochRef {
    EpochRef {
        epoch: Epoch(1),
        hash: OpHash::ZERO,
    }
}

fn messages(c: &mut Criterion) {
    let alice = DeviceIdentity::generate(&mut rng());
    let group = GroupId::random(&mut rng());
    for (len, label) in BODIES {
        let body = vec![b'x'; len];
        let mut g = c.benchmark_group(format!("message/{label}"));
        g.throughput(Throughput::Elements(1));

        let mut chain = SenderChain::generate(&mut rng());
        g.bench_function("encrypt_and_sign", |b| {
            b.iter(|| {
                Envelope::seal(
                    &alice,
                    group,
                    epoch(),
                    &mut chain,
                    black_box(&body),
                    &mut rng(),
                )
                .unwrap()
            })
        });

        let sender = SenderChain::generate(&mut rng());
        let distribution = sender.distribution();
        let mut sending = SenderChain::from_bytes(&sender.to_bytes()).unwrap();
        let envelope =
            Envelope::seal(&alice, group, epoch(), &mut sending, &body, &mut rng()).unwrap();
        g.bench_function("verify_and_decrypt", |b| {
            b.iter_batched(
                || ReceiverChain::from_distribution(&distribution).unwrap(),
                |mut chain| envelope.open(&mut chain).unwrap(),
                BatchSize::SmallInput,
            )
        });
        g.bench_function("verify_only_server_side", |b| {
            b.iter(|| black_box(&envelope).verify().unwrap())
        });

        // Baselines: the bare signature primitive over the same signed bytes.
        let signed = [
            envelope.header().as_slice(),
            &envelope.franking_tag,
            &envelope.ciphertext,
        ]
        .concat();
        g.bench_function("baseline_ed25519_sign", |b| {
            b.iter(|| alice.sign("confide/v1/envelope", &[black_box(&signed)]))
        });
        let signature = alice.sign("confide/v1/envelope", &[&signed]);
        let device = alice.device_id();
        g.bench_function("baseline_ed25519_verify", |b| {
            b.iter(|| {
                confide_protocol::identity::verify(
                    &device,
                    "confide/v1/envelope",
                    &[black_box(&signed)],
                    &signature,
                )
                .unwrap()
            })
        });
        // The same check with the public key decompressed once and kept (what a server that
        // cached each device's key per connection would pay).
        let key = ed25519_dalek::VerifyingKey::from_bytes(device.as_bytes()).unwrap();
        let message = confide_protocol::primitives::labelled("confide/v1/envelope", &[&signed]);
        let dalek_signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        g.bench_function("baseline_ed25519_verify_cached_key", |b| {
            b.iter(|| {
                key.verify_strict(black_box(&message), &dalek_signature)
                    .unwrap()
            })
        });
        g.finish();
    }
}

fn sender_keys(c: &mut Criterion) {
    let alice = DeviceIdentity::generate(&mut rng());
    let bob = DeviceIdentity::generate(&mut rng()).public_keys();
    let group = GroupId::random(&mut rng());
    let chain = SenderChain::generate(&mut rng());
    let distribution = chain.distribution();
    let mut g = c.benchmark_group("sender_key");
    g.throughput(Throughput::Elements(1));
    g.bench_function("seal_to_one_device", |b| {
        b.iter(|| {
            seal::seal(
                &alice,
                &bob,
                SealKind::SenderKey,
                group,
                epoch(),
                black_box(&distribution),
                &mut rng(),
            )
            .unwrap()
        })
    });
    g.bench_function("baseline_ed25519_sign", |b| {
        b.iter(|| alice.sign("confide/v1/seal-sig", &[black_box(&distribution)]))
    });
    g.finish();
}

/// Linked devices (issue 16): verifying a device list (what every client does for each list in
/// a log, and the server for each published one), and what linking costs the two devices —
/// the key agreement behind the numbers people compare, and sealing and opening a full-size
/// link bundle. Baselines: one Ed25519 verification, and sealing one sender key.
fn device_lists(c: &mut Criterion) {
    use confide_protocol::device_list::{DeviceList, ListedDevice, UserIdentity};
    use confide_protocol::link::{self, LinkCode, LinkEphemeral, MAX_LINK_BUNDLE_BYTES};
    let user = confide_protocol::UserId::random(&mut rng());
    let identity = UserIdentity::generate(&mut rng());
    let devices: Vec<DeviceIdentity> = (0..8)
        .map(|_| DeviceIdentity::generate(&mut rng()))
        .collect();
    let mut g = c.benchmark_group("device_list");
    g.throughput(Throughput::Elements(1));
    for n in [1usize, 8] {
        let mut list =
            DeviceList::first(user, &identity, &devices[0], confide_protocol::Timestamp(0));
        list.devices = devices[..n]
            .iter()
            .map(|d| ListedDevice::new(d, &user, &identity.public()))
            .collect();
        let signed = identity.sign_list(&list, &devices[0]).unwrap();
        g.bench_function(format!("verify_{n}_devices"), |b| {
            b.iter(|| black_box(&signed).verify().unwrap())
        });
    }
    let keys = devices[1].public_keys();
    g.bench_function("baseline_ed25519_verify", |b| {
        b.iter(|| black_box(&keys).verify().unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("link");
    g.sample_size(20);
    let channel = LinkCode::generate(&mut rng()).channel();
    let transcript = [7u8; 32];
    g.bench_function("key_agreement_sas_and_psk", |b| {
        b.iter_batched(
            || {
                (
                    LinkEphemeral::generate(&mut rng()),
                    LinkEphemeral::generate(&mut rng()).public(),
                )
            },
            |(mine, theirs)| mine.agree(&theirs, &transcript).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let psk = [9u8; 32];
    let payload = vec![b'x'; MAX_LINK_BUNDLE_BYTES];
    let new_keys = devices[1].public_keys();
    g.throughput(Throughput::Bytes(MAX_LINK_BUNDLE_BYTES as u64));
    g.bench_function("seal_512_kib_bundle", |b| {
        b.iter(|| {
            link::seal_bundle(
                &devices[0],
                &new_keys,
                &channel,
                &transcript,
                &psk,
                black_box(&payload),
                &mut rng(),
            )
            .unwrap()
        })
    });
    let sealed = link::seal_bundle(
        &devices[0],
        &new_keys,
        &channel,
        &transcript,
        &psk,
        &payload,
        &mut rng(),
    )
    .unwrap();
    g.bench_function("open_512_kib_bundle", |b| {
        b.iter(|| {
            link::open_bundle(&devices[1], &channel, &transcript, &psk, black_box(&sealed)).unwrap()
        })
    });
    g.finish();
}

fn group_work(c: &mut Criterion) {
    use confide_protocol::device_list::{DeviceList, ListedDevice, UserIdentity};
    use confide_protocol::envelope::{PinnedKind, pinned_commitment};
    use confide_protocol::group_work::{
        MAX_DOCUMENT_BYTES, MAX_MEETINGS, MAX_PLAN_ENTRIES, MAX_RESOURCES, Meeting,
        MeetingSchedule, Resource, ResourceLibrary, SafetyPlan,
    };
    use confide_protocol::own_devices::OwnDevicesPayload;
    use confide_protocol::{Timestamp, UserId};

    // As large a library as a document may be (MAX_DOCUMENT_BYTES): resources of ~630 bytes
    // added while they fit.
    let mut library = ResourceLibrary {
        resources: Vec::new(),
    };
    for i in 0..MAX_RESOURCES {
        library.resources.push(Resource {
            title: format!("Resource {i}"),
            category: format!("Category {}", i % 8),
            text: Some("Breathe in for four, hold for four. ".repeat(15)),
            link: Some(format!("https://example.org/resources/{i}")),
        });
        if serde_json::to_string(&library).unwrap().len() > MAX_DOCUMENT_BYTES {
            library.resources.pop();
            break;
        }
    }
    let text = serde_json::to_string(&library).unwrap();
    assert!(text.len() > MAX_DOCUMENT_BYTES * 9 / 10);
    let key = [7u8; 32];
    let schedule = MeetingSchedule {
        time_zone: "Europe/Berlin".into(),
        meetings: (0..MAX_MEETINGS)
            .map(|i| Meeting::Weekly {
                day: (i % 7) as u8,
                start_minute: 60 * (i as u16 % 20),
                minutes: 90,
            })
            .collect(),
        video_link: None,
        note: None,
    };
    let alice = DeviceIdentity::generate(&mut rng());
    let keys = alice.public_keys();

    let mut g = c.benchmark_group("group_work");
    g.throughput(Throughput::Elements(1));
    g.bench_function("accept_full_resource_library", |b| {
        b.iter(|| {
            let t = black_box(&text);
            PinnedKind::Resources.validate_text(t).unwrap();
            pinned_commitment(&key, PinnedKind::Resources, 1, t)
        })
    });
    g.bench_function("next_meeting_of_32", |b| {
        b.iter(|| black_box(&schedule).next_meeting(Timestamp(1_796_666_400_000)))
    });
    g.bench_function("baseline_ed25519_verify", |b| {
        b.iter(|| black_box(&keys).verify().unwrap())
    });

    // Own devices: a full safety plan from the phone to the laptop.
    let laptop = DeviceIdentity::generate(&mut rng());
    let user = UserId::random(&mut rng());
    let identity = UserIdentity::generate(&mut rng());
    let mut list = DeviceList::first(user, &identity, &alice, Timestamp(0));
    list.devices
        .push(ListedDevice::new(&laptop, &user, &identity.public()));
    let signed = identity.sign_list(&list, &alice).unwrap();
    let hash = signed.hash();
    let entry = "I notice I stop answering messages and sleep badly".to_string();
    let mut plan = SafetyPlan::default();
    for section in [
        &mut plan.warning_signs,
        &mut plan.coping_steps,
        &mut plan.people_and_places,
        &mut plan.contacts,
        &mut plan.safe_environment,
        &mut plan.reasons,
    ] {
        section.extend(std::iter::repeat_n(entry.clone(), MAX_PLAN_ENTRIES / 2));
    }
    let update = OwnDevicesPayload::SafetyPlan {
        plan,
        updated_at: Timestamp(1),
    };
    let laptop_keys = laptop.public_keys();
    g.bench_function("seal_safety_plan_to_own_device", |b| {
        b.iter(|| {
            black_box(&update)
                .seal(&alice, &list, &hash, &laptop_keys, &mut rng())
                .unwrap()
        })
    });
    let sealed = update
        .seal(&alice, &list, &hash, &laptop_keys, &mut rng())
        .unwrap();
    g.bench_function("open_safety_plan_from_own_device", |b| {
        b.iter(|| OwnDevicesPayload::open(&laptop, &list, &hash, black_box(&sealed)).unwrap())
    });
    let distribution = SenderChain::generate(&mut rng()).distribution();
    g.bench_function("baseline_seal_sender_key", |b| {
        b.iter(|| {
            seal::seal(
                &alice,
                &laptop_keys,
                SealKind::SenderKey,
                GroupId([1; 16]),
                epoch(),
                black_box(&distribution),
                &mut rng(),
            )
            .unwrap()
        })
    });
    g.finish();
}

/// Post-quantum sealing (issue 18), each beside the same work with version 1's X25519 suite in the
/// same run: seal and open one sender key; a removal rekey in a 12-member group (a fresh chain
/// sealed to the 11 other members' devices, what the removing facilitator's device does — every
/// other member does the same); and a join of a 12-member group as the joiner's device does it
/// (check the 12 members' keys, seal its chain to each).
fn post_quantum(c: &mut Criterion) {
    let alice = DeviceIdentity::generate(&mut rng());
    let pq: Vec<DeviceIdentity> = (0..12)
        .map(|_| DeviceIdentity::generate(&mut rng()))
        .collect();
    let classic: Vec<DeviceIdentity> = (0..12)
        .map(|i| DeviceIdentity::from_secret_bytes(&[i + 1; 32], &[i + 101; 32], None))
        .collect();
    let group = GroupId::random(&mut rng());
    let distribution = SenderChain::generate(&mut rng()).distribution();
    let seal_to = |to: &confide_protocol::DeviceKeys| {
        seal::seal(
            &alice,
            to,
            SealKind::SenderKey,
            group,
            epoch(),
            black_box(&distribution),
            &mut rng(),
        )
        .unwrap()
    };
    let to_pq = seal_to(&pq[0].public_keys());
    let to_classic = seal_to(&classic[0].public_keys());
    eprintln!(
        "post_quantum sizes: enc {} B (X-Wing) / {} B (X25519); sealed sender key as JSON {} B / {} B; \
         DeviceKeys as JSON {} B / {} B",
        to_pq.enc.as_bytes().len(),
        to_classic.enc.as_bytes().len(),
        serde_json::to_vec(&to_pq).unwrap().len(),
        serde_json::to_vec(&to_classic).unwrap().len(),
        serde_json::to_vec(&pq[0].public_keys()).unwrap().len(),
        serde_json::to_vec(&classic[0].public_keys()).unwrap().len(),
    );
    let mut g = c.benchmark_group("post_quantum");
    for (suite, devices) in [("x_wing", &pq), ("x25519_baseline", &classic)] {
        let keys: Vec<_> = devices.iter().map(|d| d.public_keys()).collect();
        g.bench_function(format!("seal_sender_key/{suite}"), |b| {
            b.iter(|| seal_to(&keys[0]))
        });
        let sealed = seal_to(&keys[0]);
        g.bench_function(format!("open_sender_key/{suite}"), |b| {
            b.iter(|| seal::open(&devices[0], black_box(&sealed)).unwrap())
        });
        g.bench_function(format!("removal_rekey_12_members/{suite}"), |b| {
            b.iter(|| {
                let chain = SenderChain::generate(&mut rng());
                let distribution = chain.distribution();
                keys[..11]
                    .iter()
                    .map(|k| {
                        seal::seal(
                            &alice,
                            k,
                            SealKind::SenderKey,
                            group,
                            epoch(),
                            &distribution,
                            &mut rng(),
                        )
                        .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        });
        g.bench_function(format!("join_12_members/{suite}"), |b| {
            b.iter(|| {
                for k in &keys {
                    k.verify().unwrap();
                }
                keys.iter().map(seal_to).collect::<Vec<_>>()
            })
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    messages,
    sender_keys,
    device_lists,
    group_work,
    post_quantum
);
criterion_main!(benches);
