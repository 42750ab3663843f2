#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What a person is told about an invite before joining ([`ClientCore::preview_invite`]), and
//! a group's settings as its verified log has them ([`ClientCore::settings`]), at the core with
//! a scripted server (the shared harness in `support`).
//!
//! The scripted server serves any device a group's log, invite or not (as a careless or
//! hostile server could): whatever the preview refuses, it refuses by the verified log and
//! this device's clock, not by the server's word.
//!
//! [`ClientCore::preview_invite`]: confide_client_core::ClientCore::preview_invite
//! [`ClientCore::settings`]: confide_client_core::ClientCore::settings

mod support;

use std::sync::atomic::{AtomicU8, Ordering};

use base64::Engine as _;
use confide_client_core::{ClientError, Invite, InviteUnusable};
use confide_protocol::frames::{ClientFrame, ErrorCode};
use confide_protocol::group_log::{
    GroupSettings, InviteSecret, OpBody, OpenHours, OpenWindow, Role,
};
use confide_protocol::{GroupId, OpHash, Timestamp};
use pollster::block_on;
use support::{Device, Member, NOW, refuse, silence};

/// Fay, the group's facilitator, who makes the invites.
fn fay() -> Member {
    Member::new(3, "Fay")
}

/// Bob, someone else Fay invites.
fn bob() -> Member {
    Member::new(2, "Bob")
}

/// When the invites of these tests stop accepting joins: an hour from [`NOW`].
const EXPIRES: Timestamp = Timestamp(NOW.0 + 3_600_000);

/// Fay's group on the server (Alice's device is not told), with Bob in it.
fn fays_group(device: &Device) -> GroupId {
    let fay = fay();
    let group = device.foreign_group(&fay, 40);
    device.member_adds(group, &fay, bob().entry());
    group
}

/// An invite link with these fields, as Fay's client would write it (or anyone who altered
/// it).
fn link(
    group: GroupId,
    genesis: OpHash,
    inviter: &Member,
    secret: &InviteSecret,
    requires_approval: bool,
) -> Invite {
    let json = serde_json::json!({
        "v": 1,
        "group": group,
        "genesis": genesis,
        "inviter": inviter.device(),
        "secret": base64::engine::general_purpose::STANDARD.encode(*secret.to_bytes()),
        "requires_approval": requires_approval,
    });
    Invite::from_link(&format!(
        "confide-invite:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).unwrap())
    ))
    .unwrap()
}

/// A new invite secret, another for every call.
fn fresh_secret() -> InviteSecret {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    InviteSecret::from_bytes(&[NEXT.fetch_add(1, Ordering::SeqCst); 32])
}

/// Fay makes an invite to `group` (its op appended to the log on the server) and its link.
fn invite(device: &Device, group: GroupId, requires_approval: bool, max_uses: u32) -> Invite {
    let fay = fay();
    let secret = fresh_secret();
    device.member_op(
        group,
        &fay,
        OpBody::Invite {
            invite: secret.id(),
            requires_approval,
            max_uses,
            expires_at: EXPIRES,
        },
    );
    let genesis = device.state(group).genesis_hash();
    link(group, genesis, &fay, &secret, requires_approval)
}

/// The preview's error, which must be one.
fn refused(device: &mut Device, invite: &Invite) -> ClientError {
    block_on(device.core.preview_invite(invite)).unwrap_err()
}

#[test]
fn a_preview_names_the_inviting_facilitator_from_the_verified_log_and_joins_nothing() {
    let mut w = Device::new();
    let group = fays_group(&w);
    let invite = invite(&w, group, false, 1);
    w.clear();
    let preview = block_on(w.core.preview_invite(&invite)).unwrap();
    assert_eq!(preview.group, group);
    assert!(!preview.requires_approval);
    let checked = preview.checked.expect("the log was fetched and verified");
    assert_eq!(checked.inviter, fay().user);
    assert_eq!(checked.inviter_name, "Fay");
    assert_eq!(checked.inviter_role, Role::Facilitator);
    assert_eq!(checked.members, 2, "Fay and Bob");
    assert_eq!(checked.expires_at, Some(EXPIRES));
    assert!(!checked.already_member);
    // Only the log was asked for: nothing joined, nothing kept.
    let sent = w.sent_as(|f| Some(f.type_name()));
    assert!(sent.iter().all(|t| *t == "sync"), "{sent:?}");
    assert!(
        block_on(w.core.groups()).iter().all(|g| g.group != group),
        "the group is not taken in by a preview"
    );
    assert!(w.events().is_empty(), "{:?}", w.events());
}

#[test]
fn a_preview_says_a_facilitator_must_approve_as_the_log_records_the_invite() {
    let mut w = Device::new();
    let group = fays_group(&w);
    let invite = invite(&w, group, true, 5);
    let preview = block_on(w.core.preview_invite(&invite)).unwrap();
    assert!(preview.requires_approval);
    assert_eq!(preview.checked.unwrap().inviter_name, "Fay");

    // A link altered to say no approval is needed: the log says it is.
    let fay = fay();
    let secret = fresh_secret();
    w.member_op(
        group,
        &fay,
        OpBody::Invite {
            invite: secret.id(),
            requires_approval: true,
            max_uses: 1,
            expires_at: EXPIRES,
        },
    );
    let altered = link(group, w.state(group).genesis_hash(), &fay, &secret, false);
    let preview = block_on(w.core.preview_invite(&altered)).unwrap();
    assert!(preview.requires_approval, "the verified log, not the link");
    // Joining with it follows the log too: a request for the facilitators, not a join.
    let outcome = block_on(w.core.join(altered, Some("hello".into()))).unwrap();
    assert_eq!(outcome, confide_client_core::JoinOutcome::Pending(group));
}

#[test]
fn an_expired_invite_is_refused_by_this_devices_clock_though_the_server_shows_the_log() {
    let mut w = Device::new();
    let group = fays_group(&w);
    let invite = invite(&w, group, false, 1);
    w.set_clock(Timestamp(EXPIRES.0 + 1));
    let e = refused(&mut w, &invite);
    assert!(
        matches!(e, ClientError::InviteUnusable(InviteUnusable::Expired)),
        "{e}"
    );
    assert_eq!(e.code(), "invite_expired");
    assert!(e.to_string().contains("expired"), "{e}");
}

#[test]
fn a_used_up_or_revoked_invite_is_refused() {
    let mut w = Device::new();
    let group = fays_group(&w);
    // Carol joined with the only use of this one.
    let fay = fay();
    let secret = fresh_secret();
    w.member_op(
        group,
        &fay,
        OpBody::Invite {
            invite: secret.id(),
            requires_approval: false,
            max_uses: 1,
            expires_at: EXPIRES,
        },
    );
    let carol = Member::new(5, "Carol");
    w.member_op(
        group,
        &carol,
        OpBody::Join {
            invite: secret.id(),
            member: carol.entry(),
            invite_sig: secret.sign_join(&group, &carol.user, &carol.device()),
        },
    );
    let used = link(group, w.state(group).genesis_hash(), &fay, &secret, false);
    let e = refused(&mut w, &used);
    assert_eq!(e.code(), "invite_used_up", "{e}");

    let revoked = invite(&w, group, false, 3);
    w.member_op(
        group,
        &fay,
        OpBody::RevokeInvite {
            invite: revoked.id(),
        },
    );
    let e = refused(&mut w, &revoked);
    assert_eq!(e.code(), "invite_revoked", "{e}");
}

#[test]
fn an_invite_the_log_does_not_know_is_unknown_and_so_is_a_server_refusal_to_show_the_log() {
    let mut w = Device::new();
    let group = fays_group(&w);
    // A secret whose invite op was never appended.
    let secret = fresh_secret();
    let never = link(group, w.state(group).genesis_hash(), &fay(), &secret, false);
    let e = refused(&mut w, &never);
    assert_eq!(e.code(), "invite_unknown", "{e}");

    // The server's own refusals keep their meaning, under the same codes.
    let invite = invite(&w, group, false, 1);
    for (code, expected) in [
        (ErrorCode::NotMember, "invite_unknown"),
        (ErrorCode::NoSuchGroup, "invite_unknown"),
        (ErrorCode::InviteExpired, "invite_expired"),
        (ErrorCode::InviteUsedUp, "invite_used_up"),
        (ErrorCode::InviteRevoked, "invite_revoked"),
    ] {
        w.answer(Some(refuse(code, |f| {
            matches!(f, ClientFrame::Sync { .. })
        })));
        assert_eq!(refused(&mut w, &invite).code(), expected, "{code:?}");
    }
}

#[test]
fn a_log_from_another_genesis_or_an_inviter_who_is_no_facilitator_is_refused() {
    let mut w = Device::new();
    let group = fays_group(&w);
    let genuine = invite(&w, group, false, 1);
    let fay = fay();
    let secret = fresh_secret();
    w.member_op(
        group,
        &fay,
        OpBody::Invite {
            invite: secret.id(),
            requires_approval: false,
            max_uses: 1,
            expires_at: EXPIRES,
        },
    );
    // The link names another genesis than the log the server shows.
    let other_genesis = link(group, OpHash([9; 32]), &fay, &secret, false);
    let e = refused(&mut w, &other_genesis);
    assert_eq!(e.code(), "bad_invite", "{e}");
    // The link names Bob, a plain member, as the inviter: the log says Fay made it.
    let by_bob = link(group, w.state(group).genesis_hash(), &bob(), &secret, false);
    let e = refused(&mut w, &by_bob);
    assert_eq!(e.code(), "bad_invite", "{e}");
    assert!(e.to_string().contains("another facilitator"), "{e}");
    // A log that does not verify (Fay's invite op re-signed by Bob) is no preview either.
    w.edit_log(group, |log| {
        let last = log.ops.len() - 1;
        let state = {
            let mut s = confide_protocol::group_log::GroupState::from_genesis(&log.ops[0]).unwrap();
            for op in &log.ops[1..last] {
                s.apply(op).unwrap();
            }
            s
        };
        log.ops[last] = bob().op(
            &state,
            NOW,
            OpBody::Invite {
                invite: secret.id(),
                requires_approval: false,
                max_uses: 1,
                expires_at: EXPIRES,
            },
        );
    });
    let e = refused(&mut w, &genuine);
    assert_eq!(e.code(), "bad_invite", "{e}");
    assert!(e.to_string().contains("does not verify"), "{e}");
}

#[test]
fn offline_a_preview_holds_only_what_the_link_says() {
    let mut w = Device::new();
    let group = fays_group(&w);
    let invite = invite(&w, group, true, 1);
    w.answer(Some(silence()));
    let preview = block_on(w.core.preview_invite(&invite)).unwrap();
    assert_eq!(preview.group, group);
    assert!(preview.requires_approval, "as the link says");
    assert_eq!(preview.checked, None, "nothing was verified");
    assert_eq!(invite.unchecked_preview(), preview);
}

#[test]
fn a_member_previewing_an_invite_is_told_they_are_in_the_group_already() {
    let mut w = Device::new();
    let group = w.invited_by(&fay(), 41);
    block_on(w.core.sync()).unwrap();
    block_on(w.core.accept_group(group)).unwrap();
    let invite = invite(&w, group, false, 1);
    let preview = block_on(w.core.preview_invite(&invite)).unwrap();
    let checked = preview.checked.unwrap();
    assert!(checked.already_member);
    assert_eq!(checked.inviter_name, "Fay");
    assert_eq!(checked.expires_at, Some(EXPIRES));
    // Offline, from the log this device verified.
    w.answer(Some(silence()));
    let offline = block_on(w.core.preview_invite(&invite)).unwrap();
    assert!(offline.checked.unwrap().already_member);
}

#[test]
fn the_settings_getter_reads_what_the_facilitator_set_from_the_verified_log() {
    let mut w = Device::new();
    let group = w.group_with(&[&bob()]);
    let fresh = w.core.settings(group).unwrap();
    assert!(!fresh.locked);
    assert_eq!(fresh.open_hours, None);
    assert!(fresh.open_now);
    assert_eq!(fresh.slow_mode_seconds, 0);
    assert_eq!(fresh.retention_seconds, None);
    assert!(!fresh.members_may_message_privately);
    assert_eq!(fresh.agreement_version, None);
    assert!(!fresh.crisis_resources);

    let hours = OpenHours {
        time_zone: "Europe/Berlin".into(),
        windows: (0..4)
            .map(|day| OpenWindow {
                day,
                start_minute: 18 * 60,
                end_minute: 22 * 60,
            })
            .collect(),
    };
    w.append(
        group,
        OpBody::SetOpenHours {
            schedule: Some(hours.clone()),
        },
    );
    w.append(
        group,
        OpBody::SetRetention {
            seconds: Some(30 * 86_400),
        },
    );
    w.append(group, OpBody::SetSlowMode { seconds: 60 });
    w.append(
        group,
        OpBody::SetSettings {
            settings: GroupSettings {
                members_may_message_privately: true,
            },
        },
    );
    w.append(group, OpBody::Lock {});
    let set = w.core.settings(group).unwrap();
    assert!(set.locked);
    assert_eq!(set.open_hours, Some(hours));
    assert_eq!(set.slow_mode_seconds, 60);
    assert_eq!(set.retention_seconds, Some(30 * 86_400));
    assert!(set.members_may_message_privately);

    // Taken back, the getter follows the log.
    w.append(group, OpBody::SetOpenHours { schedule: None });
    w.append(group, OpBody::SetRetention { seconds: None });
    w.append(group, OpBody::Unlock {});
    let back = w.core.settings(group).unwrap();
    assert_eq!(back.open_hours, None);
    assert_eq!(back.retention_seconds, None);
    assert!(!back.locked);

    assert!(matches!(
        w.core.settings(GroupId([99; 16])),
        Err(ClientError::UnknownGroup)
    ));
}

#[test]
fn a_link_that_names_another_facilitator_than_the_one_who_made_the_invite_is_refused() {
    let mut w = Device::new();
    let group = fays_group(&w);
    let fay = fay();
    let carol = Member::new(5, "Carol");
    w.member_adds(group, &fay, carol.entry());
    w.member_op(
        group,
        &fay,
        OpBody::SetRole {
            user: carol.user,
            role: Role::CoFacilitator,
        },
    );
    let secret = fresh_secret();
    w.member_op(
        group,
        &carol,
        OpBody::Invite {
            invite: secret.id(),
            requires_approval: false,
            max_uses: 1,
            expires_at: EXPIRES,
        },
    );
    let genesis = w.state(group).genesis_hash();
    // As Carol's client wrote it: Carol invites.
    let honest = link(group, genesis, &carol, &secret, false);
    let checked = block_on(w.core.preview_invite(&honest))
        .unwrap()
        .checked
        .unwrap();
    assert_eq!(checked.inviter_name, "Carol");
    assert_eq!(checked.inviter_role, Role::CoFacilitator);
    // Passed on with Fay, the lead facilitator, named instead: neither shown nor joined.
    let repointed = link(group, genesis, &fay, &secret, false);
    let e = refused(&mut w, &repointed);
    assert_eq!(e.code(), "bad_invite", "{e}");
    let e = block_on(w.core.join(repointed, None)).unwrap_err();
    assert_eq!(e.code(), "bad_invite", "{e}");
}
