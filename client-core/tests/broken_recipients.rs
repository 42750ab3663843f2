#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! One member whose device keys cannot be sealed to never silences a group: every loop that
//! seals to several devices (sender keys, reports, notes) leaves that device out and seals to
//! all the others.

mod support;

use confide_protocol::device_list::DeviceList;
use confide_protocol::group_log::{MemberEntry, Role};
use confide_protocol::identity::LABEL_SEALING_KEY;
use confide_protocol::report;
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
fn a_member_whose_keys_cannot_be_sealed_to_does_not_stop_the_others_posting_and_reading() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let mallory = Member::new(3, "Mallory");
    let group = device.group_with(&[&bob]);
    device.append(group, add(broken_entry(&mallory)));
    assert!(device.state(group).member(&mallory.user).is_some());
    device.clear();

    // Alice posts: her sender key goes to Bob, not to Mallory's broken device.
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
    // Bob reads it.
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

#[test]
fn a_co_facilitator_whose_keys_cannot_be_sealed_to_does_not_stop_reports_reaching_the_others() {
    let mut device = Device::new();
    let mut bob = Member::new(2, "Bob");
    let carol = Member::new(4, "Carol");
    let mallory = Member::new(3, "Mallory");
    let group = device.group_with(&[&bob, &carol]);
    device.append(group, add(broken_entry(&mallory)));
    device.set_role(group, carol.user, Role::CoFacilitator);
    device.set_role(group, mallory.user, Role::CoFacilitator);
    device.member_posts(group, &mut bob, "something hurtful");
    device.clear();

    let seq = device.log(group).messages.last().unwrap().seq;
    block_on(device.core.report(group, seq, "hurtful".into())).unwrap();
    let reports: Vec<_> = device
        .sealed()
        .into_iter()
        .filter(|s| s.kind == SealKind::Report)
        .collect();
    assert_eq!(
        reports.iter().map(|s| s.recipient).collect::<Vec<_>>(),
        vec![carol.device()],
        "the report reaches Carol, not Mallory's broken device"
    );
    let verified = report::open_report(&carol.identity, &reports[0]).unwrap();
    assert!(String::from_utf8_lossy(&verified.body).contains("something hurtful"));
    assert_eq!(verified.seq, seq);
}
