//! Rules that the server and clients both evaluate, written once.
//!
//! The server enforces these rules on requests and a client evaluates the same rules to tell
//! its user what they may do, to decide what to keep, drop or send again, and to check what
//! the server serves. Two copies drift apart; so each rule is one pure function here, citing
//! the PROTOCOL.md section that states it, and both sides call it. Like the rest of the
//! crate, nothing here reads a clock or does I/O: the caller passes the time in, either as a
//! [`Timestamp`] (wall-clock milliseconds, for rules stated in the log's own times) or as an
//! elapsed [`Duration`] (for rules the caller measures on its own monotonic clock, such as
//! slow mode and the epoch grace period on the server).
//!
//! Rules here, and where the rest live:
//!
//! - **Posting** (PROTOCOL.md §10.1 `post` steps 5–7, §10.2): [`may_post`], built from
//!   [`GroupState::muted_until`], [`GroupState::locked`], [`GroupState::within_open_hours`],
//!   [`GroupState::agreement_pending`] and [`slow_mode_wait`].
//! - **Epochs** (§8.8, §10.1 `post` step 8, §11.2 steps 6 and 9): [`can_read_epoch`] and
//!   [`Member::can_read_epoch`](crate::group_log::Member::can_read_epoch),
//!   [`accepts_post_epoch`] with
//!   [`EpochGrace`], [`OpBody::grants_epoch_grace`](crate::OpBody::grants_epoch_grace),
//!   [`OpBody::ends_epoch_by_departure`](crate::OpBody::ends_epoch_by_departure), and
//!   [`slipped_in_after_departure`].
//! - **Invites** (§8.9, §9.6): [`InviteState::problem`](crate::group_log::InviteState::problem),
//!   [`InviteState::is_usable`](crate::group_log::InviteState::is_usable),
//!   [`InviteState::takes_join_requests`](crate::group_log::InviteState::takes_join_requests),
//!   [`GroupState::takes_join_requests`].
//! - **Retention** (§10.2, §11.4): [`retention_cutoff`], [`is_past_retention`],
//!   [`GroupState::retention_cutoff`].
//! - **Sync paging** (§9.6): [`SyncCursor`], [`sync_page_limit`], [`ops_complete`],
//!   [`sync_next_seq`], [`sync_page_complete`], [`SYNC_PAGE_REQUEST`].
//! - **Retries** (§9.8, §9.9): [`ErrorCode::is_retryable`](crate::ErrorCode::is_retryable),
//!   [`ErrorCode::retry_hint_ms`](crate::ErrorCode::retry_hint_ms).
//! - **Limits** both sides check: [`MAX_SYNC_LIMIT`], [`crate::seal::MAX_SEALED_CIPHERTEXT`]
//!   (and the others of PROTOCOL.md §10.4, each beside the format it bounds).
//! - **Clock conversions**: [`Timestamp::from_unix_duration`],
//!   [`Timestamp::saturating_add`], [`Timestamp::saturating_sub`], [`Timestamp::until`],
//!   [`duration_ms`](crate::ids::duration_ms), and the time a new op claims,
//!   [`GroupState::claim_time`] (§8.11).

use std::time::Duration;

use crate::frames::{ErrorCode, MAX_SYNC_LIMIT};
use crate::group_log::GroupState;
use crate::ids::{DeviceId, Epoch, EpochRef, Seq, Timestamp, UserId};

// ---------------------------------------------------------------------------------------------
// Posting
// ---------------------------------------------------------------------------------------------

/// Why the group's moderation state refuses a member's post (PROTOCOL.md §10.1 `post` steps
/// 5–7, §10.2), in the order the checks are made. Each maps onto the [`ErrorCode`] the server
/// answers with ([`Self::code`]) and, for a refusal that passes by itself, the wait it
/// announces ([`Self::retry_after`]); the `Display` text is the server's message.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostRefusal {
    /// The device is not a current member's device (§10.1 `post` step 5).
    #[error("this device is not a member of the group")]
    NotMember,
    /// The user is muted (moderators included), until `until` (§10.1 `post` step 6).
    #[error("you are muted until {} (unix ms)", until.0)]
    Muted {
        /// When the mute ends.
        until: Timestamp,
        /// How long from the time of the check until then (at least 1 ms).
        wait: Duration,
    },
    /// A facilitator locked the chat; only moderators post (§10.1 `post` step 7.1).
    #[error("the group is locked; only facilitators can post")]
    Locked,
    /// The chat is outside its open hours; only moderators post (§10.1 `post` step 7.2).
    #[error("the group is outside its open hours ({time_zone}); only facilitators can post")]
    OutsideOpenHours {
        /// The schedule's time zone, to say in whose hours it is closed.
        time_zone: String,
    },
    /// The open hours cannot be evaluated (a time zone this build does not know): closed, so
    /// that an unknown schedule never opens a chat (§10.1 `post` step 7.2, "fails closed").
    #[error("the group's open hours cannot be evaluated ({reason}); only facilitators can post")]
    OpenHoursUnknown {
        /// Why they cannot be evaluated.
        reason: String,
    },
    /// The member has not accepted the current agreement, `version` (§10.1 `post` step 7.3).
    #[error("accept the current group agreement before posting")]
    AgreementRequired {
        /// The agreement version to accept.
        version: u32,
    },
    /// Slow mode allows no message from this user yet (§10.1 `post` step 7.4).
    #[error("slow mode: one message per {seconds} s")]
    SlowMode {
        /// The group's slow-mode interval.
        seconds: u32,
        /// How long until the interval has passed.
        wait: Duration,
    },
}

impl PostRefusal {
    /// The error code the server answers the post with (PROTOCOL.md §9.9): `not_member`,
    /// `muted`, `locked` (for both the lock and the open hours), `agreement_required` or
    /// `slow_mode`.
    pub fn code(&self) -> ErrorCode {
        match self {
            PostRefusal::NotMember => ErrorCode::NotMember,
            PostRefusal::Muted { .. } => ErrorCode::Muted,
            PostRefusal::Locked
            | PostRefusal::OutsideOpenHours { .. }
            | PostRefusal::OpenHoursUnknown { .. } => ErrorCode::Locked,
            PostRefusal::AgreementRequired { .. } => ErrorCode::AgreementRequired,
            PostRefusal::SlowMode { .. } => ErrorCode::SlowMode,
        }
    }

    /// How long until the same post may succeed, for the refusals that pass by themselves
    /// (`muted`, `slow_mode`: exactly the retryable codes among them, §9.9); `None` for the
    /// others, which wait for something nobody can time (a facilitator's `unlock`, the user
    /// accepting the agreement). `locked` by open hours carries none either: the server does
    /// not announce when a schedule opens (§9.9).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PostRefusal::Muted { wait, .. } | PostRefusal::SlowMode { wait, .. } => Some(*wait),
            _ => None,
        }
    }
}

/// Whether the member behind `device` may post in the group at `now`, checking in the order of
/// PROTOCOL.md §10.1 `post` steps 5–7: a current member's device (`not_member`); not muted
/// (moderators included: `muted`); then, for everyone but facilitators and co-facilitators,
/// not locked, inside the open hours (failing closed), the current agreement accepted, and
/// slow mode's interval passed. Returns the poster's user.
///
/// `since_last_post` is how long ago this user's last accepted post was (from any of their
/// devices), as the caller keeps track — `None` if it knows of none. The server measures it
/// on its own monotonic clock from the posts it accepted (§10.2: kept in memory). The
/// epoch check, step 8, is [`accepts_post_epoch`].
///
/// # Errors
///
/// The first [`PostRefusal`] that applies.
pub fn may_post(
    state: &GroupState,
    device: &DeviceId,
    now: Timestamp,
    since_last_post: Option<Duration>,
) -> Result<UserId, PostRefusal> {
    let Some((user, member)) = state.member_of_device(device) else {
        return Err(PostRefusal::NotMember);
    };
    if let Some(until) = state.muted_until(user, now) {
        return Err(PostRefusal::Muted {
            until,
            wait: now.until(until),
        });
    }
    if member.role.is_moderator() {
        return Ok(*user);
    }
    if state.locked() {
        return Err(PostRefusal::Locked);
    }
    match state.within_open_hours(now) {
        Ok(true) => {}
        Ok(false) => {
            return Err(PostRefusal::OutsideOpenHours {
                time_zone: state
                    .open_hours()
                    .map(|hours| hours.time_zone.clone())
                    .unwrap_or_default(),
            });
        }
        Err(e) => {
            return Err(PostRefusal::OpenHoursUnknown {
                reason: e.to_string(),
            });
        }
    }
    if let Some(version) = state.agreement_pending(user) {
        return Err(PostRefusal::AgreementRequired { version });
    }
    if let Some(wait) = slow_mode_wait(state.slow_mode_seconds(), since_last_post) {
        return Err(PostRefusal::SlowMode {
            seconds: state.slow_mode_seconds(),
            wait,
        });
    }
    Ok(*user)
}

/// How long a user must still wait under slow mode (PROTOCOL.md §10.1 `post` step 7.4): with an
/// interval of `interval_seconds` (0 = off) and their last accepted post `since_last_post` ago
/// (`None`: none known), the rest of the interval, or `None` when they may post. Exactly at the
/// end of the interval they may.
pub fn slow_mode_wait(
    interval_seconds: u32,
    since_last_post: Option<Duration>,
) -> Option<Duration> {
    let interval = Duration::from_secs(u64::from(interval_seconds));
    let elapsed = since_last_post?;
    interval.checked_sub(elapsed).filter(|wait| !wait.is_zero())
}

// ---------------------------------------------------------------------------------------------
// Epochs
// ---------------------------------------------------------------------------------------------

/// The epoch that an admission (`join` or `add`) or a `rekey` just ended, which posts may still
/// name for a while ([`accepts_post_epoch`]). Kept only when the op that ended it
/// [grants grace](crate::OpBody::grants_epoch_grace): never after a `remove`, `leave` or
/// an `update_devices` that dropped a device.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct EpochGrace {
    /// The epoch (number and hash) that ended.
    pub previous: EpochRef,
    /// How long ago the op that ended it was applied, on the caller's clock.
    pub elapsed: Duration,
}

/// Whether a post naming epoch `claimed` is accepted while the group is in `current`
/// (PROTOCOL.md §10.1 `post` step 8, §10.2 "epochs"): the current epoch and epoch hash; or the
/// previous ones while less than `period` (the server's `epoch_grace`, 60 s by default) has
/// passed since an admission or a `rekey` ended them. `grace` is `None` when the current epoch was started
/// by a departure, or is the first: then nothing but the current epoch is accepted, so nothing
/// encrypted under keys a departed member holds gets in after their departure.
pub fn accepts_post_epoch(
    current: EpochRef,
    claimed: EpochRef,
    grace: Option<EpochGrace>,
    period: Duration,
) -> bool {
    claimed == current || grace.is_some_and(|g| g.previous == claimed && g.elapsed < period)
}

/// Whether a member who joined in `joined_epoch` can read messages of `epoch` (PROTOCOL.md
/// §8.8): from the epoch they joined in on, never before, as they hold no key for it. The
/// server leaves older messages out of a member's sync pages (§9.6 "No ciphertext from before
/// joining"); a client drops one it is sent anyway without reporting it (§11.2 step 6).
pub fn can_read_epoch(joined_epoch: Epoch, epoch: Epoch) -> bool {
    epoch >= joined_epoch
}

/// The client's side of "no grace after a departure" (PROTOCOL.md §11.2 step 9): a message
/// stored at `seq` in an epoch that ended with a `remove`, `leave` or `update_devices` — **or in any earlier
/// epoch** — was slipped in after the departure, possibly under keys the departed member
/// holds, if a message of an epoch after the departure was stored before it.
/// `later_epochs_first_seqs` are the lowest seqs the client knows of messages in each epoch
/// after the departure (processed, or posted by itself). Once the departure is applied the
/// server accepts nothing in the epoch it ended nor in any earlier one (§10.1: the grace covers
/// only the epoch just before the current one, and never one a departure ended), so an honest
/// server never stores one.
pub fn slipped_in_after_departure(
    seq: Seq,
    later_epochs_first_seqs: impl IntoIterator<Item = Seq>,
) -> bool {
    later_epochs_first_seqs.into_iter().any(|first| first < seq)
}

// ---------------------------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------------------------

/// The retention cutoff at `now` for a period of `seconds` (PROTOCOL.md §10.2
/// `set_retention`, §11.4): `now − seconds`, saturating at 0. Messages received before it are
/// past retention ([`is_past_retention`]); both the server's sweeper and a client measure by
/// the server's `received_at`.
pub fn retention_cutoff(now: Timestamp, seconds: u64) -> Timestamp {
    Timestamp(now.0.saturating_sub(seconds.saturating_mul(1000)))
}

/// Whether a message the server received at `received_at` is past retention at `cutoff`
/// ([`retention_cutoff`]): strictly before it. One received exactly at the cutoff is kept.
pub fn is_past_retention(received_at: Timestamp, cutoff: Timestamp) -> bool {
    received_at < cutoff
}

// ---------------------------------------------------------------------------------------------
// Sync paging
// ---------------------------------------------------------------------------------------------

/// How many ops and messages a client asks for per `sync` page: the most any server serves
/// ([`MAX_SYNC_LIMIT`]); a server with a lower `sync_page_limit` clamps it
/// ([`sync_page_limit`]), so asking for more than the server's limit costs nothing.
pub const SYNC_PAGE_REQUEST: u32 = MAX_SYNC_LIMIT;

/// Where a `sync` request starts (PROTOCOL.md §9.6): after op `after_op_seq` (absent: from the
/// genesis op 0) and after message `after_seq` (messages are numbered from 1, so 0 means from
/// the first).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SyncCursor {
    /// The seq of the last op the client holds (`None`: it holds none).
    pub after_op_seq: Option<u64>,
    /// The seq of the last message the client processed (0: none).
    pub after_seq: Seq,
}

impl SyncCursor {
    /// From the start: every op from the genesis, every message from seq 1.
    pub const START: SyncCursor = SyncCursor {
        after_op_seq: None,
        after_seq: Seq(0),
    };

    /// The cursor of a client that holds ops up to `op_head` and has processed every message
    /// below `next_seq` (a `next_seq` of 0 or 1 means none yet).
    pub fn resume(op_head: u64, next_seq: Seq) -> SyncCursor {
        SyncCursor {
            after_op_seq: Some(op_head),
            after_seq: Seq(next_seq.0.saturating_sub(1)),
        }
    }

    /// The cursor that continues after a page that answered `next_op_seq` and `next_seq`
    /// (§9.6: ask again with `after_op_seq = next_op_seq − 1`, absent if `next_op_seq` is 0, and
    /// `after_seq = next_seq − 1`).
    pub fn after_page(next_op_seq: u64, next_seq: Seq) -> SyncCursor {
        SyncCursor {
            after_op_seq: next_op_seq.checked_sub(1),
            after_seq: Seq(next_seq.0.saturating_sub(1)),
        }
    }

    /// The seq of the first op the page serves: `after_op_seq + 1`, or 0 (§9.6 `from_op`).
    pub fn first_op(&self) -> u64 {
        self.after_op_seq.map_or(0, |seq| seq.saturating_add(1))
    }
}

/// How many ops, and separately how many messages, a page may carry (§9.6 `L`): the request's
/// `limit` clamped to `1..=cap`, where `cap` is the server's `sync_page_limit` clamped to
/// `1..=`[`MAX_SYNC_LIMIT`].
pub fn sync_page_limit(requested: u32, server_limit: u32) -> usize {
    // MAX_SYNC_LIMIT is a constant of at least 1, so neither clamp's bounds are inverted.
    let cap = server_limit.clamp(1, MAX_SYNC_LIMIT);
    // u32 → usize: no target this crate builds for has a usize narrower than 32 bits.
    requested.clamp(1, cap) as usize
}

/// Whether a page whose ops end before `next_op_seq` reaches the `head` of the log the
/// requester may read (§9.6 `ops_complete`): only then does it carry messages, so that a
/// client can always check a message against a log that reaches it.
pub fn ops_complete(next_op_seq: u64, head: u64) -> bool {
    next_op_seq > head
}

/// The page's `next_seq` (§9.6): one past the last message the page covers (`last_covered`),
/// or `after_seq + 1` when it covers none. Every message below it is in this page or an
/// earlier one, left out, or no longer stored.
pub fn sync_next_seq(after_seq: Seq, last_covered: Option<Seq>) -> Seq {
    let last = last_covered.unwrap_or(after_seq);
    Seq(last.0.saturating_add(1))
}

/// Whether a page is the last one (§9.6 `complete`): its ops reach the head
/// ([`ops_complete`]), fewer messages were fetched than the page `limit` (so none are left
/// beyond them), and none of them was cut to fit the page's byte budget (`covered` is how many
/// of the `fetched` messages the page covers, counted before messages from before the member
/// joined are dropped). A page that is not complete is simply followed by another.
pub fn sync_page_complete(
    ops_complete: bool,
    fetched: usize,
    limit: usize,
    covered: usize,
) -> bool {
    ops_complete && fetched < limit && covered == fetched
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::ErrorCode;
    use crate::group_log::{
        GroupSettings, InviteSecret, MemberEntry, Op, OpBody, OpenHours, OpenWindow, Role,
    };
    use crate::identity::DeviceIdentity;
    use crate::ids::{GroupId, OpHash, duration_ms};
    use crate::test_rng;

    /// 2026-01-05T12:00:00Z, a Monday.
    const T0: u64 = 1_767_614_400_000;
    const SECOND: u64 = 1000;

    /// `rfc3339` (e.g. `2026-03-29T00:59:59.999Z`) as a timestamp.
    fn utc(rfc3339: &str) -> Timestamp {
        let t: jiff::Timestamp = rfc3339.parse().unwrap();
        Timestamp(u64::try_from(t.as_millisecond()).unwrap())
    }

    struct Person {
        user: UserId,
        device: DeviceIdentity,
    }

    impl Person {
        fn new(seed: u8) -> Person {
            let mut rng = test_rng(seed);
            Person {
                user: UserId::random(&mut rng),
                device: DeviceIdentity::generate(&mut rng),
            }
        }

        fn id(&self) -> DeviceId {
            self.device.device_id()
        }

        fn entry(&self, name: &str) -> MemberEntry {
            MemberEntry {
                user: self.user,
                display_name: name.into(),
                devices: vec![self.device.public_keys()],
                device_list: None,
            }
        }
    }

    /// A group of a facilitator and one plain member, with a clock for the ops' `at`.
    struct Group {
        state: GroupState,
        fac: Person,
        member: Person,
        clock: u64,
    }

    impl Group {
        fn new() -> Group {
            let fac = Person::new(1);
            let member = Person::new(2);
            let genesis = Op::genesis(
                GroupId::random(&mut test_rng(9)),
                fac.id(),
                Timestamp(T0),
                fac.entry("Fay"),
                GroupSettings::default(),
            )
            .sign(&fac.device)
            .unwrap();
            let mut g = Group {
                state: GroupState::from_genesis(&genesis).unwrap(),
                fac,
                member,
                clock: T0,
            };
            let add = OpBody::Add {
                member: g.member.entry("Mia"),
                invite: None,
                invite_sig: None,
                invite_device: None,
            };
            g.by_fac(add);
            g
        }

        /// Signs `body` by `author` (the facilitator, or else the member) a second after the
        /// previous op, and applies it.
        fn push(&mut self, by_fac: bool, body: OpBody) {
            self.clock += SECOND;
            let author = if by_fac { &self.fac } else { &self.member };
            let signed = self
                .state
                .next_op(author.id(), Timestamp(self.clock), body)
                .sign(&author.device)
                .unwrap();
            self.state.apply(&signed).unwrap();
        }

        fn by_fac(&mut self, body: OpBody) {
            self.push(true, body);
        }

        fn by_member(&mut self, body: OpBody) {
            self.push(false, body);
        }

        fn member_may_post(
            &self,
            now: Timestamp,
            since: Option<Duration>,
        ) -> Result<UserId, PostRefusal> {
            may_post(&self.state, &self.member.id(), now, since)
        }

        fn fac_may_post(&self, now: Timestamp) -> Result<UserId, PostRefusal> {
            may_post(&self.state, &self.fac.id(), now, None)
        }
    }

    fn hours(tz: &str, windows: &[(u8, u16, u16)]) -> OpenHours {
        OpenHours {
            time_zone: tz.into(),
            windows: windows
                .iter()
                .map(|&(day, start_minute, end_minute)| OpenWindow {
                    day,
                    start_minute,
                    end_minute,
                })
                .collect(),
        }
    }

    #[test]
    fn a_member_posts_when_nothing_restricts_them_and_a_stranger_never() {
        let g = Group::new();
        assert_eq!(g.member_may_post(Timestamp(T0), None), Ok(g.member.user));
        let stranger = Person::new(3);
        let refusal = may_post(&g.state, &stranger.id(), Timestamp(T0), None).unwrap_err();
        assert_eq!(refusal, PostRefusal::NotMember);
        assert_eq!(refusal.code(), ErrorCode::NotMember);
        assert_eq!(refusal.retry_after(), None);
    }

    #[test]
    fn a_mute_ends_exactly_at_its_until_and_applies_to_facilitators_too() {
        let mut g = Group::new();
        let until = Timestamp(T0 + 600 * SECOND);
        let (member, fac) = (g.member.user, g.fac.user);
        g.by_fac(OpBody::Mute {
            user: member,
            until,
        });
        let refusal = g.member_may_post(Timestamp(until.0 - 1), None).unwrap_err();
        assert_eq!(
            refusal,
            PostRefusal::Muted {
                until,
                wait: Duration::from_millis(1)
            }
        );
        assert_eq!(refusal.code(), ErrorCode::Muted);
        assert_eq!(refusal.retry_after(), Some(Duration::from_millis(1)));
        assert_eq!(
            refusal.to_string(),
            format!("you are muted until {} (unix ms)", until.0)
        );
        // At `until` the mute is over (it lasts while `until` > now).
        assert_eq!(g.member_may_post(until, None), Ok(member));
        assert_eq!(g.state.muted_until(&member, until), None);
        assert_eq!(
            g.state.muted_until(&member, Timestamp(until.0 - 1)),
            Some(until)
        );

        // A second facilitator mutes the first: a mute binds moderators as well.
        let mut g = Group::new();
        g.by_fac(OpBody::SetRole {
            user: member,
            role: Role::Facilitator,
        });
        g.by_member(OpBody::Mute { user: fac, until });
        assert_eq!(
            g.fac_may_post(Timestamp(T0 + SECOND * 10))
                .unwrap_err()
                .code(),
            ErrorCode::Muted
        );
    }

    #[test]
    fn a_lock_stops_members_but_not_facilitators() {
        let mut g = Group::new();
        g.by_fac(OpBody::Lock {});
        let refusal = g.member_may_post(Timestamp(T0), None).unwrap_err();
        assert_eq!(refusal, PostRefusal::Locked);
        assert_eq!(refusal.code(), ErrorCode::Locked);
        assert_eq!(refusal.retry_after(), None, "nobody can time an unlock");
        assert_eq!(g.fac_may_post(Timestamp(T0)), Ok(g.fac.user));
        g.by_fac(OpBody::Unlock {});
        assert!(g.member_may_post(Timestamp(T0), None).is_ok());
    }

    #[test]
    fn open_hours_start_inclusive_end_exclusive_to_the_millisecond() {
        let mut g = Group::new();
        // Monday 18:00–20:00 in Berlin (CET in January, UTC+1).
        g.by_fac(OpBody::SetOpenHours {
            schedule: Some(hours("Europe/Berlin", &[(0, 18 * 60, 20 * 60)])),
        });
        let closed = PostRefusal::OutsideOpenHours {
            time_zone: "Europe/Berlin".into(),
        };
        assert_eq!(
            g.member_may_post(utc("2026-01-05T16:59:59.999Z"), None),
            Err(closed.clone())
        );
        assert!(g.member_may_post(utc("2026-01-05T17:00:00Z"), None).is_ok());
        assert!(
            g.member_may_post(utc("2026-01-05T18:59:59.999Z"), None)
                .is_ok()
        );
        assert_eq!(
            g.member_may_post(utc("2026-01-05T19:00:00Z"), None),
            Err(closed.clone())
        );
        assert_eq!(closed.code(), ErrorCode::Locked);
        assert_eq!(closed.retry_after(), None);
        // Facilitators post outside the hours.
        assert!(g.fac_may_post(utc("2026-01-05T19:00:00Z")).is_ok());
    }

    #[test]
    fn open_hours_across_midnight_are_two_windows_of_two_days() {
        let monday_late = hours("Europe/Berlin", &[(0, 22 * 60, 1440)]);
        let both = hours("Europe/Berlin", &[(0, 22 * 60, 1440), (1, 0, 2 * 60)]);
        // Monday 23:59:59.999 local: the Monday window, whose end 1440 is midnight.
        let before_midnight = utc("2026-01-05T22:59:59.999Z");
        assert!(monday_late.is_open_at(before_midnight).unwrap());
        assert!(both.is_open_at(before_midnight).unwrap());
        // Tuesday 00:00 local: the Monday window does not reach into Tuesday.
        let midnight = utc("2026-01-05T23:00:00Z");
        assert!(!monday_late.is_open_at(midnight).unwrap());
        assert!(both.is_open_at(midnight).unwrap());
        // Tuesday 02:00 local: closed again.
        assert!(!both.is_open_at(utc("2026-01-06T01:00:00Z")).unwrap());
        assert!(both.is_open_at(utc("2026-01-06T00:59:59.999Z")).unwrap());
    }

    #[test]
    fn open_hours_follow_local_time_across_daylight_saving_changes() {
        // 2026-03-29 (a Sunday, day 6): at 01:00Z Berlin jumps from 02:00 CET to 03:00 CEST.
        let the_lost_hour = hours("Europe/Berlin", &[(6, 2 * 60, 3 * 60)]);
        for t in [
            "2026-03-29T00:59:59.999Z", // 01:59:59.999 CET
            "2026-03-29T01:00:00Z",     // 03:00 CEST
            "2026-03-29T01:30:00Z",     // 03:30 CEST
        ] {
            assert!(!the_lost_hour.is_open_at(utc(t)).unwrap(), "{t}");
        }
        let around_it = hours("Europe/Berlin", &[(6, 60, 4 * 60)]);
        assert!(
            around_it
                .is_open_at(utc("2026-03-29T00:59:59.999Z"))
                .unwrap()
        );
        assert!(around_it.is_open_at(utc("2026-03-29T01:00:00Z")).unwrap());
        // 01:00–04:00 local is two real hours that day: 04:00 CEST is 02:00Z.
        assert!(
            around_it
                .is_open_at(utc("2026-03-29T01:59:59.999Z"))
                .unwrap()
        );
        assert!(!around_it.is_open_at(utc("2026-03-29T02:00:00Z")).unwrap());

        // 2026-10-25 (a Sunday): at 01:00Z Berlin falls back from 03:00 CEST to 02:00 CET, so
        // 02:00–03:00 local happens twice, and the window is open both times.
        let the_double_hour = hours("Europe/Berlin", &[(6, 2 * 60, 3 * 60)]);
        assert!(
            !the_double_hour
                .is_open_at(utc("2026-10-24T23:59:59.999Z"))
                .unwrap()
        );
        assert!(
            the_double_hour
                .is_open_at(utc("2026-10-25T00:00:00Z"))
                .unwrap()
        ); // 02:00 CEST
        assert!(
            the_double_hour
                .is_open_at(utc("2026-10-25T00:59:59.999Z"))
                .unwrap()
        );
        assert!(
            the_double_hour
                .is_open_at(utc("2026-10-25T01:00:00Z"))
                .unwrap()
        ); // 02:00 CET
        assert!(
            the_double_hour
                .is_open_at(utc("2026-10-25T01:59:59.999Z"))
                .unwrap()
        );
        assert!(
            !the_double_hour
                .is_open_at(utc("2026-10-25T02:00:00Z"))
                .unwrap()
        ); // 03:00 CET
    }

    #[test]
    fn open_hours_in_an_unknown_time_zone_keep_the_chat_closed() {
        let mut g = Group::new();
        // The log accepts any well-formed name (log validity must not depend on a tz
        // database); this one is well-formed and unknown.
        g.by_fac(OpBody::SetOpenHours {
            schedule: Some(hours("Mars/Olympus_Mons", &[(0, 0, 1440)])),
        });
        let refusal = g.member_may_post(Timestamp(T0), None).unwrap_err();
        assert!(
            matches!(refusal, PostRefusal::OpenHoursUnknown { .. }),
            "{refusal:?}"
        );
        assert_eq!(refusal.code(), ErrorCode::Locked);
        assert!(g.state.within_open_hours(Timestamp(T0)).is_err());
        assert!(g.fac_may_post(Timestamp(T0)).is_ok());
    }

    #[test]
    fn an_agreement_must_be_accepted_before_a_member_posts() {
        let mut g = Group::new();
        let text_hash = [7; 32];
        g.by_fac(OpBody::SetAgreement {
            version: 1,
            text_hash,
        });
        assert_eq!(g.state.agreement_pending(&g.member.user), Some(1));
        let refusal = g.member_may_post(Timestamp(T0), None).unwrap_err();
        assert_eq!(refusal, PostRefusal::AgreementRequired { version: 1 });
        assert_eq!(refusal.code(), ErrorCode::AgreementRequired);
        // A facilitator who has not accepted posts anyway.
        assert!(g.fac_may_post(Timestamp(T0)).is_ok());
        g.by_member(OpBody::AcceptAgreement {
            version: 1,
            text_hash: Some(text_hash),
        });
        assert_eq!(g.state.agreement_pending(&g.member.user), None);
        assert!(g.member_may_post(Timestamp(T0), None).is_ok());
        // Someone who is not a member has nothing to accept.
        assert_eq!(g.state.agreement_pending(&Person::new(3).user), None);
    }

    #[test]
    fn slow_mode_lets_a_member_post_again_exactly_when_the_interval_has_passed() {
        let mut g = Group::new();
        g.by_fac(OpBody::SetSlowMode { seconds: 30 });
        let t = Timestamp(T0);
        assert!(
            g.member_may_post(t, None).is_ok(),
            "a first post is never slowed"
        );
        let refusal = g
            .member_may_post(t, Some(Duration::from_millis(29_999)))
            .unwrap_err();
        assert_eq!(
            refusal,
            PostRefusal::SlowMode {
                seconds: 30,
                wait: Duration::from_millis(1)
            }
        );
        assert_eq!(refusal.code(), ErrorCode::SlowMode);
        assert_eq!(refusal.retry_after(), Some(Duration::from_millis(1)));
        assert!(g.member_may_post(t, Some(Duration::from_secs(30))).is_ok());
        assert!(g.fac_may_post(t).is_ok());
        assert_eq!(
            may_post(&g.state, &g.fac.id(), t, Some(Duration::ZERO)),
            Ok(g.fac.user),
            "moderators are not slowed"
        );

        assert_eq!(slow_mode_wait(0, Some(Duration::ZERO)), None, "0 is off");
        assert_eq!(slow_mode_wait(5, None), None);
        assert_eq!(
            slow_mode_wait(5, Some(Duration::from_secs(2))),
            Some(Duration::from_secs(3))
        );
        assert_eq!(slow_mode_wait(5, Some(Duration::from_secs(5))), None);
        assert_eq!(slow_mode_wait(5, Some(Duration::from_secs(3600))), None);
    }

    #[test]
    fn refusals_come_in_the_order_of_the_specification() {
        let mut g = Group::new();
        let member = g.member.user;
        let until = Timestamp(T0 + 3600 * SECOND);
        g.by_fac(OpBody::SetSlowMode { seconds: 30 });
        g.by_fac(OpBody::SetAgreement {
            version: 1,
            text_hash: [1; 32],
        });
        g.by_fac(OpBody::SetOpenHours {
            schedule: Some(hours("Europe/Berlin", &[(6, 0, 1)])),
        });
        g.by_fac(OpBody::Lock {});
        g.by_fac(OpBody::Mute {
            user: member,
            until,
        });
        let busy = Some(Duration::ZERO);
        let t = Timestamp(T0);
        let code = |g: &Group| g.member_may_post(t, busy).unwrap_err().code();
        assert_eq!(code(&g), ErrorCode::Muted);
        g.by_fac(OpBody::Unmute { user: member });
        assert_eq!(g.member_may_post(t, busy), Err(PostRefusal::Locked));
        g.by_fac(OpBody::Unlock {});
        assert!(matches!(
            g.member_may_post(t, busy),
            Err(PostRefusal::OutsideOpenHours { .. })
        ));
        g.by_fac(OpBody::SetOpenHours { schedule: None });
        assert_eq!(code(&g), ErrorCode::AgreementRequired);
        g.by_member(OpBody::AcceptAgreement {
            version: 1,
            text_hash: Some([1; 32]),
        });
        assert_eq!(code(&g), ErrorCode::SlowMode);
    }

    fn epoch(n: u64, byte: u8) -> EpochRef {
        EpochRef {
            epoch: Epoch(n),
            hash: OpHash([byte; 32]),
        }
    }

    #[test]
    fn the_previous_epoch_is_accepted_only_within_the_grace_after_an_admission() {
        let (old, new) = (epoch(3, 3), epoch(4, 4));
        let period = Duration::from_secs(60);
        let grace = |elapsed| {
            Some(EpochGrace {
                previous: old,
                elapsed,
            })
        };
        assert!(accepts_post_epoch(new, new, None, period));
        assert!(accepts_post_epoch(new, old, grace(Duration::ZERO), period));
        assert!(accepts_post_epoch(
            new,
            old,
            grace(Duration::from_millis(59_999)),
            period
        ));
        assert!(
            !accepts_post_epoch(new, old, grace(period), period),
            "the grace ends at exactly the period"
        );
        assert!(
            !accepts_post_epoch(new, old, None, period),
            "no grace after a departure"
        );
        // Another branch's epoch of the same number, or an older epoch, never.
        assert!(!accepts_post_epoch(
            new,
            epoch(3, 9),
            grace(Duration::ZERO),
            period
        ));
        assert!(!accepts_post_epoch(
            new,
            epoch(4, 9),
            grace(Duration::ZERO),
            period
        ));
        assert!(!accepts_post_epoch(
            new,
            epoch(2, 2),
            grace(Duration::ZERO),
            period
        ));
        assert!(!accepts_post_epoch(
            new,
            epoch(5, 5),
            grace(Duration::ZERO),
            period
        ));
    }

    #[test]
    fn admissions_and_rekeys_grant_grace_and_only_departures_end_an_epoch_without_it() {
        let who = Person::new(5);
        let secret = InviteSecret::generate(&mut test_rng(6));
        let join = OpBody::Join {
            invite: secret.id(),
            member: who.entry("Noor"),
            invite_sig: secret.sign_join(&GroupId([0; 16]), &who.user, &who.id()),
        };
        let add = OpBody::Add {
            member: who.entry("Noor"),
            invite: None,
            invite_sig: None,
            invite_device: None,
        };
        let remove = OpBody::Remove {
            user: who.user,
            ban: false,
        };
        for body in [&join, &add, &OpBody::Rekey {}] {
            assert!(body.changes_epoch(), "{}", body.action());
            assert!(body.grants_epoch_grace(), "{}", body.action());
            assert!(!body.ends_epoch_by_departure(), "{}", body.action());
        }
        for body in [&remove, &OpBody::Leave {}] {
            assert!(!body.grants_epoch_grace(), "{}", body.action());
            assert!(body.ends_epoch_by_departure(), "{}", body.action());
        }
        for body in [
            OpBody::Lock {},
            OpBody::SetSlowMode { seconds: 1 },
            OpBody::Unmute { user: who.user },
        ] {
            assert!(!body.changes_epoch());
            assert!(!body.grants_epoch_grace(), "{}", body.action());
            assert!(!body.ends_epoch_by_departure(), "{}", body.action());
        }
    }

    #[test]
    fn posts_in_flight_across_a_rekey_still_get_the_grace() {
        let mut g = Group::new();
        let before = g.state.epoch_ref();
        // The plain member rekeys a minute after the epoch began.
        let at = g.state.earliest_rekey_at();
        let signed = g
            .state
            .next_op(g.member.id(), at, OpBody::Rekey {})
            .sign(&g.member.device)
            .unwrap();
        let applied = g.state.apply(&signed).unwrap();
        assert!(applied.grants_epoch_grace());
        assert!(!applied.ends_epoch_by_departure());
        assert!(!g.state.epoch_began_with_departure());
        assert!(!g.state.epoch_began_with_departure_of(&g.member.id()));
        let after = g.state.epoch_ref();
        assert_ne!(after, before);
        let period = Duration::from_secs(60);
        let grace = Some(EpochGrace {
            previous: before,
            elapsed: Duration::from_secs(5),
        });
        assert!(
            accepts_post_epoch(after, before, grace, period),
            "a message written just before the rekey is still taken"
        );
        assert!(accepts_post_epoch(after, after, grace, period));
    }

    #[test]
    fn a_member_reads_from_the_epoch_they_joined_in_on() {
        let mut g = Group::new();
        let (mia, _) = g.state.member_of_device(&g.member.id()).unwrap();
        let mia = *mia;
        let joined = g.state.member(&mia).unwrap().joined_epoch;
        assert_eq!(joined, Epoch(1), "added in the op that started epoch 1");
        let member = g.state.member(&mia).unwrap().clone();
        assert!(!member.can_read_epoch(Epoch(0)));
        assert!(member.can_read_epoch(Epoch(1)));
        assert!(member.can_read_epoch(Epoch(7)));
        // A later joiner reads nothing from before, even of the epoch just before theirs.
        let noor = Person::new(5);
        g.by_fac(OpBody::Add {
            member: noor.entry("Noor"),
            invite: None,
            invite_sig: None,
            invite_device: None,
        });
        let noor = g.state.member(&noor.user).unwrap();
        assert!(!noor.can_read_epoch(Epoch(1)));
        assert!(noor.can_read_epoch(Epoch(2)));
        assert!(can_read_epoch(Epoch(2), Epoch(2)));
        assert!(!can_read_epoch(Epoch(2), Epoch(1)));
    }

    #[test]
    fn a_message_of_an_epoch_ended_by_a_departure_is_refused_once_a_later_epoch_was_in_use() {
        // The later epochs' first messages were stored at 10 and 20.
        let later = [Seq(20), Seq(10)];
        assert!(!slipped_in_after_departure(Seq(9), later));
        assert!(
            !slipped_in_after_departure(Seq(10), later),
            "the same seq is not after"
        );
        assert!(slipped_in_after_departure(Seq(11), later));
        assert!(
            !slipped_in_after_departure(Seq(1000), []),
            "no later message known"
        );
    }

    #[test]
    fn invites_are_usable_through_the_millisecond_they_expire_at() {
        let mut g = Group::new();
        let approval = InviteSecret::generate(&mut test_rng(20));
        let direct = InviteSecret::generate(&mut test_rng(21));
        let expires_at = Timestamp(T0 + 3600 * SECOND);
        for (secret, requires_approval) in [(&approval, true), (&direct, false)] {
            g.by_fac(OpBody::Invite {
                invite: secret.id(),
                requires_approval,
                max_uses: 1,
                expires_at,
            });
        }
        let invite = g.state.invite(&approval.id()).unwrap().clone();
        assert!(invite.is_usable(expires_at));
        assert!(invite.takes_join_requests(expires_at));
        assert!(g.state.takes_join_requests(expires_at));
        let after = Timestamp(expires_at.0 + 1);
        assert!(!invite.is_usable(after));
        assert!(!invite.takes_join_requests(after));
        assert!(!g.state.takes_join_requests(after));
        // An invite without approval never takes join requests.
        let plain = g.state.invite(&direct.id()).unwrap();
        assert!(plain.is_usable(expires_at));
        assert!(!plain.takes_join_requests(expires_at));

        // Revoked or used up: closed at once.
        g.by_fac(OpBody::RevokeInvite {
            invite: approval.id(),
        });
        assert!(!g.state.takes_join_requests(Timestamp(T0)));
        let mut used_up = invite.clone();
        used_up.uses = used_up.max_uses;
        assert!(!used_up.is_usable(Timestamp(T0)));
        assert!(!used_up.takes_join_requests(Timestamp(T0)));
    }

    #[test]
    fn retention_deletes_what_was_received_before_the_cutoff_and_keeps_the_cutoff_itself() {
        let now = Timestamp(T0);
        let cutoff = retention_cutoff(now, 3600);
        assert_eq!(cutoff, Timestamp(T0 - 3600 * SECOND));
        assert!(is_past_retention(Timestamp(cutoff.0 - 1), cutoff));
        assert!(!is_past_retention(cutoff, cutoff));
        assert_eq!(
            retention_cutoff(Timestamp(5), u64::MAX),
            Timestamp(0),
            "saturates"
        );

        let mut g = Group::new();
        assert_eq!(
            g.state.retention_cutoff(now),
            None,
            "no period keeps everything"
        );
        g.by_fac(OpBody::SetRetention {
            seconds: Some(3600),
        });
        assert_eq!(g.state.retention_cutoff(now), Some(cutoff));
    }

    #[test]
    fn a_new_op_claims_the_authors_time_unless_the_log_is_further_ahead() {
        let mut g = Group::new();
        let latest = g.clock;
        assert_eq!(g.state.latest_at(), Timestamp(latest));
        assert_eq!(
            g.state.claim_time(Timestamp(latest + 1)),
            Timestamp(latest + 1)
        );
        // A clock far behind the log claims the earliest time the log accepts.
        let behind = g.state.claim_time(Timestamp(T0 - 3_600_000));
        assert_eq!(behind, g.state.min_next_at());
        let signed = g.state.next_op(g.fac.id(), behind, OpBody::Lock {});
        let signed = signed.sign(&g.fac.device).unwrap();
        assert!(
            g.state.apply(&signed).is_ok(),
            "the claimed time is not backdated"
        );
    }

    #[test]
    fn sync_cursors_continue_where_the_last_page_ended() {
        assert_eq!(SyncCursor::START.first_op(), 0);
        assert_eq!(SyncCursor::default(), SyncCursor::START);
        // A client holding ops 0..=7 that processed messages below 12.
        let held = SyncCursor::resume(7, Seq(12));
        assert_eq!(held.after_op_seq, Some(7));
        assert_eq!(held.after_seq, Seq(11));
        assert_eq!(held.first_op(), 8);
        // Nothing processed yet: next_seq 0 or 1 both mean "from the first message".
        assert_eq!(SyncCursor::resume(0, Seq(0)).after_seq, Seq(0));
        assert_eq!(SyncCursor::resume(0, Seq(1)).after_seq, Seq(0));
        // A page that carried no op at all (next_op_seq 0) continues from the genesis again.
        assert_eq!(SyncCursor::after_page(0, Seq(1)), SyncCursor::START);
        assert_eq!(
            SyncCursor::after_page(8, Seq(12)),
            SyncCursor {
                after_op_seq: Some(7),
                after_seq: Seq(11)
            }
        );
        assert_eq!(
            SyncCursor {
                after_op_seq: Some(u64::MAX),
                after_seq: Seq(0)
            }
            .first_op(),
            u64::MAX,
            "saturates"
        );
    }

    #[test]
    fn a_page_limit_is_the_request_clamped_to_the_servers_and_the_protocols() {
        assert_eq!(SYNC_PAGE_REQUEST, MAX_SYNC_LIMIT);
        assert_eq!(sync_page_limit(SYNC_PAGE_REQUEST, 500), 500);
        assert_eq!(sync_page_limit(100, 500), 100);
        assert_eq!(sync_page_limit(0, 500), 1, "at least one");
        assert_eq!(sync_page_limit(500, 20), 20);
        assert_eq!(
            sync_page_limit(500, 0),
            1,
            "a server limit of 0 still serves"
        );
        assert_eq!(
            sync_page_limit(u32::MAX, u32::MAX),
            MAX_SYNC_LIMIT as usize,
            "never above the protocol's cap"
        );
    }

    #[test]
    fn a_page_is_complete_only_when_nothing_is_left_beyond_it() {
        assert!(ops_complete(8, 7));
        assert!(!ops_complete(7, 7), "op 7 (the head) not yet served");
        assert_eq!(sync_next_seq(Seq(11), None), Seq(12));
        assert_eq!(sync_next_seq(Seq(11), Some(Seq(40))), Seq(41));
        assert_eq!(sync_next_seq(Seq(u64::MAX), None), Seq(u64::MAX));
        // Fewer than the limit fetched and all covered.
        assert!(sync_page_complete(true, 3, 500, 3));
        assert!(sync_page_complete(true, 0, 500, 0));
        // Ops still missing: messages come later.
        assert!(!sync_page_complete(false, 0, 500, 0));
        // A full page may have more behind it.
        assert!(!sync_page_complete(true, 500, 500, 500));
        // Messages cut to the byte budget.
        assert!(!sync_page_complete(true, 3, 500, 2));
    }

    #[test]
    fn clock_conversions_saturate_instead_of_wrapping() {
        assert_eq!(
            Timestamp::from_unix_duration(Duration::from_millis(T0) + Duration::from_micros(999)),
            Timestamp(T0),
            "whole milliseconds"
        );
        assert_eq!(
            Timestamp::from_unix_duration(Duration::MAX),
            Timestamp(u64::MAX)
        );
        assert_eq!(
            Timestamp(T0).saturating_add(Duration::from_secs(1)),
            Timestamp(T0 + SECOND)
        );
        assert_eq!(
            Timestamp(T0).saturating_add(Duration::MAX),
            Timestamp(u64::MAX)
        );
        assert_eq!(
            Timestamp(T0).saturating_sub(Duration::from_secs(1)),
            Timestamp(T0 - SECOND)
        );
        assert_eq!(Timestamp(5).saturating_sub(Duration::MAX), Timestamp(0));
        assert_eq!(
            Timestamp(T0).until(Timestamp(T0 + 5)),
            Duration::from_millis(5)
        );
        assert_eq!(Timestamp(T0 + 5).until(Timestamp(T0)), Duration::ZERO);
        assert_eq!(duration_ms(Duration::from_micros(1500)), 1);
        assert_eq!(duration_ms(Duration::MAX), u64::MAX);
    }

    #[test]
    fn exactly_the_codes_that_pass_by_themselves_are_retryable_and_carry_a_wait() {
        let retryable: Vec<ErrorCode> = ErrorCode::ALL
            .into_iter()
            .filter(|c| c.is_retryable())
            .collect();
        assert_eq!(
            retryable,
            [
                ErrorCode::Muted,
                ErrorCode::SlowMode,
                ErrorCode::RateLimited,
                ErrorCode::TooManyConnections,
                ErrorCode::InboxFull,
                ErrorCode::Storage,
                ErrorCode::ShuttingDown,
            ]
        );
        // The two that clear by themselves at a time nobody announces, and unknown codes, are
        // not retried in a loop.
        for code in [
            ErrorCode::Locked,
            ErrorCode::GroupExists,
            ErrorCode::Internal,
            ErrorCode::Unrecognized,
        ] {
            assert!(!code.is_retryable(), "{code}");
        }
        let fallback = Duration::from_secs(5);
        assert_eq!(
            ErrorCode::SlowMode.retry_hint_ms(Some(Duration::from_millis(1500)), fallback),
            Some(1500)
        );
        assert_eq!(
            ErrorCode::Muted.retry_hint_ms(Some(Duration::ZERO), fallback),
            Some(1),
            "at least 1"
        );
        assert_eq!(
            ErrorCode::Storage.retry_hint_ms(None, fallback),
            Some(5000),
            "never without a wait"
        );
        assert_eq!(
            ErrorCode::Locked.retry_hint_ms(Some(Duration::from_secs(1)), fallback),
            None,
            "never with one"
        );
    }
}
