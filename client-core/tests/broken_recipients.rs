#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! One member whose device keys cannot be sealed to never silences a group. Such keys are not
//! valid keys (PROTOCOL.md §3.2: an X25519 key of small order, an X-Wing key that fails ML-KEM's
//! check), so no log admits them; and should a device's keys still fail to seal, every loop that
//! seals to several devices leaves that device out and seals to the others (`seal_to_each`).

mod support;

use confide_protocol::device_list::DeviceList;
use confide_protocol::group_log::MemberEntry;
use confide_protocol::identity::LABEL_SEALING_KEY;
use confide_protocol::seal::{self, SealKind};
use confide_protocol::sender_key::ReceiverChain;
use confide_protocol::{DeviceKeys, Timestamp};
use pollster::block_on;
use support::{Device, Member, add};

/// Mallory's entry: her device lists an X25519 key of small order (all zeros), correctly
/// signed by her device, and no X-Wing key. HPKE refuses to seal to it (the shared secret
/// would be all zeros).
fn broken_entry(mallory: &Member) -> MemberEntry {
    let zero = [0u8; 32];
    let keys = DeviceKeys {
        device: mallory.device(),
        sealing_key: zero,
        sealing_sig: mallory.identity.sign(LABEL_SEALING_KEY, &[&zero]),
        pq_key: None,
        pq_sig: None,
    };
    let identity = mallory.user_identity();
    let mut list = DeviceList::first(mallory.user, &identity, &mallory.identity, Timestamp(0));
    list.devices[0].keys = keys.clone();
    MemberEntry {
        user: mallory.user,
        display_name: mallory.name.clone(),
        devices: vec![keys],
        device_list: Some(identity.sign_list(&list, &mallory.identity).unwrap()),
    }
}

#[test]
fn a_member_whose_keys_cannot_be_sealed_to_is_never_admitted_and_the_group_goes_on() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let mallory = Member::new(3, "Mallory");
    let group = device.group_with(&[&bob]);
    // Alice's device will not write an add with keys HPKE cannot seal to.
    assert!(block_on(device.core.append(group, add(broken_entry(&mallory)))).is_err());
    assert!(device.state(group).member(&mallory.user).is_none());
    device.clear();

    // Alice posts: her sender key goes to Bob.
    device.send(group, "still here").unwrap();
    let sealed = device.sealed();
    let keys: Vec<_> = sealed
        .iter()
        .filter(|s| s.kind == SealKind::SenderKey)
        .collect();
    assert_eq!(
        keys.iter().map(|s| s.recipient).collect::<Vec<_>>(),
        vec![bob.device()],
        "sealed to Bob alone"
    );
    let distribution = seal::open(&bob.identity, keys[0]).unwrap();
    let mut chain = ReceiverChain::from_distribution(&distribution).unwrap();
    let posted = device.posted();
    assert_eq!(posted.len(), 1);
    let opened = posted[0].open(&mut chain).unwrap();
    assert!(String::from_utf8_lossy(&opened.body).contains("still here"));

    // Bob posts, and Alice reads him.
    device.member_posts(group, &mut bob, "me too");
    assert_eq!(device.shown(), vec!["me too".to_owned()]);
}
