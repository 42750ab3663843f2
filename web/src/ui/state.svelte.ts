// The app's state (Svelte 5 runes), fed by the SDK's events: who is signed in, the groups, the
// messages loaded so far, the system lines seen this session, unread counts, the connection,
// and the screen. Drafts and the invite link are kept in memory only (never at rest).

import { notifyEvent } from '../pwa/notify.ts';
import { forgetServiceWorker } from '../pwa/service-worker.ts';
import type { Confide, CoreEvent } from '../sdk/client.ts';
import { errorText } from './errors.ts';
import type {
  ChatMessage,
  ConnectionState,
  GroupInfo,
  GroupNotice,
  HeldMessage,
  Me,
  ProfileState,
  RoundView,
} from '../wasm-pkg/confide_client_web.js';

/** Where the person is. */
export type Screen =
  | { name: 'groups' }
  | { name: 'group'; group: string }
  | { name: 'info'; group: string }
  | { name: 'settings' }
  | { name: 'safety-plan' }
  | { name: 'join' }
  | { name: 'waiting'; group: string };

import type { SystemLine } from './lines.ts';
import { caughtUpLine, groupWarningLine, postQuantumAfter } from './core-warnings.ts';
export type { SystemLine };

// What went wrong, in our own words (never the server's): errors.ts.
export { errorCode, errorText } from './errors.ts';

/**
 * Zeroes a passphrase's bytes, unless the SDK already transferred them to the worker (the
 * buffer is then detached and empty here, and the worker zeroes its copy).
 */
export function wipe(bytes: Uint8Array): void {
  if (bytes.byteLength > 0) bytes.fill(0);
}

/** How many messages a conversation loads when it opens. */
const PAGE = 200;

export class AppState {
  /** The SDK. */
  readonly confide: Confide;
  /** Whether this browser holds a profile, and whether it is unlocked. */
  profile = $state<ProfileState>('none');
  /** Who this device is, once unlocked. */
  me = $state<Me | undefined>();
  /** The groups this device knows. */
  groups = $state.raw<GroupInfo[]>([]);
  /** What is on screen. */
  screen = $state<Screen>({ name: 'groups' });
  /** The connection to the server. */
  connection = $state<ConnectionState>('connecting');
  /** Messages per group, oldest first (loaded when a group opens, then kept up to date). */
  messages = $state.raw<Record<string, ChatMessage[]>>({});
  /** System lines per group. */
  lines = $state.raw<Record<string, SystemLine[]>>({});
  /** New messages per group: the core's count after its read marker, kept up to date live. */
  unread = $state.raw<Record<string, number>>({});
  /**
   * Groups with a warning line (`groupBehind`, `orderWarning`, `keyChanged`) added this session
   * while their conversation was not on screen: marked in the groups list until opened.
   */
  warned = $state.raw<Record<string, boolean>>({});
  /** When the newest message of each group arrived. */
  lastAt = $state.raw<Record<string, number>>({});
  /** Groups with older messages than those loaded. */
  more = $state.raw<Record<string, boolean>>({});
  /**
   * The person's messages the core has not sent yet, per group, as the core lists them (`held`):
   * kept in the profile, so they survive a reload and every tab shows the same ones.
   */
  held = $state.raw<Record<string, HeldMessage[]>>({});
  /** The check-in rounds per group, oldest first, as the core lists them (`rounds`). */
  rounds = $state.raw<Record<string, RoundView[]>>({});
  /**
   * The warning topics this device hides, per group (a local setting, never sent): a message
   * with one of them shows only "Content warning: …" and a Show button.
   */
  hiddenTopics = $state.raw<Record<string, number[]>>({});
  /** The invite link the page was opened with, until it is used or set aside. */
  invite = $state<string | undefined>();
  /** Bumped when a group's pinned texts, status or members may have changed. */
  changes = $state(0);
  /** Bumped when this account's devices changed (linked or unlinked, here or elsewhere). */
  devicesChanged = $state(0);
  /**
   * A serious warning: someone may hold an account's identity key who should not (`own`: this
   * person's own account; else a member's, named if known). Shown until dismissed.
   */
  identityWarning = $state<{ own: true } | { own: false; name: string } | undefined>();
  /**
   * Updates came faster than the page could take them (`eventsDropped`): the groups were read
   * again, and the app says that a warning may have been among the ones left out. Shown until
   * dismissed.
   */
  missedUpdates = $state(false);
  /**
   * The server refused this device's post-quantum key (`postQuantumKeyRefused`; its stable
   * code), said where this device is shown (or, for `relink_needed`, above every screen).
   * Cleared when the connection ends: the core tries again at the next one, and says so again
   * before `connected` if it is refused again ({@link postQuantumAfter}).
   */
  postQuantumRefused = $state<string | undefined>();
  /**
   * This device was unlinked from another device of the account: its keys were deleted by the
   * core and the profile is deleted here; the app says so until the person goes on.
   */
  unlinked = $state(false);
  /** Minutes without a touch or a key after which the profile locks itself (0: never). */
  idleLockMinutes = $state(15);
  /** When the person last touched or typed. */
  private lastActivity = Date.now();
  /** Drafts per group as typed; kept in the encrypted store a moment later (`saveDraft`). */
  readonly drafts = new Map<string, string>();
  /** Groups whose draft changed and is not stored yet. */
  private readonly draftsToSave = new Set<string>();
  private draftTimer: ReturnType<typeof setTimeout> | undefined;
  /** Pseudonyms seen, by user id (from messages and member lists). */
  readonly names = new Map<string, string>();
  /** The newest message number seen per group, not yet sent to the core. */
  private readonly toMarkRead = new Map<string, number>();
  /** Groups with a `markRead` call on its way (one at a time per group). */
  private readonly marking = new Set<string>();
  /** The newest number sent per group this session: a look at the same messages sends nothing. */
  private readonly marked = new Map<string, number>();
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(confide: Confide, invite: string | undefined) {
    this.confide = confide;
    this.invite = invite;
    confide.on((event) => this.handle(event));
    for (const type of ['pointerdown', 'keydown', 'wheel'] as const) {
      addEventListener(type, () => (this.lastActivity = Date.now()), { passive: true, capture: true });
    }
    setInterval(() => void this.lockIfIdle(), 20_000);
    // A draft waiting for the typing to pause is stored before the page may go away.
    document.addEventListener('visibilitychange', () => {
      if (document.hidden) void this.saveDrafts();
    });
    addEventListener('pagehide', () => void this.saveDrafts());
  }

  /**
   * Keeps `text` as the group's draft: at once in memory, and in the encrypted store once the
   * typing pauses (one write per pause, not per key). An empty text removes it.
   */
  saveDraft(group: string, text: string): void {
    if ((this.drafts.get(group) ?? '') === text) return;
    this.drafts.set(group, text);
    this.draftsToSave.add(group);
    clearTimeout(this.draftTimer);
    this.draftTimer = setTimeout(() => void this.saveDrafts(), text === '' ? 0 : 600);
  }

  /** Stores the drafts that changed (before locking, hiding or leaving the page too). */
  async saveDrafts(): Promise<void> {
    clearTimeout(this.draftTimer);
    this.draftTimer = undefined;
    const groups = [...this.draftsToSave];
    this.draftsToSave.clear();
    await Promise.all(
      groups.map((group) =>
        // Not kept if it fails (locked meanwhile, say): what is typed stays on screen.
        this.confide.setDraft({ group, text: this.drafts.get(group) ?? '' }).catch(() => undefined),
      ),
    );
  }

  /**
   * Tells the core the person has seen `group` up to message `number` (the Timeline calls it
   * only while the list's bottom is on screen in a visible, focused window). The count of new
   * messages lives in the encrypted store, so it survives a reload and every tab agrees.
   * A burst (a sync while the group is open) sends one call at a time.
   */
  markRead(group: string, number: number): void {
    if (this.unread[group] !== 0) this.unread = { ...this.unread, [group]: 0 };
    if (number <= Math.max(this.marked.get(group) ?? 0, this.toMarkRead.get(group) ?? 0)) return;
    this.toMarkRead.set(group, number);
    if (!this.marking.has(group)) void this.sendMarks(group);
  }

  /**
   * Sends the group's newest mark at once (the worker may end with the page, so waiting would
   * lose it); marks that come while one is on its way are sent after it as one.
   */
  private async sendMarks(group: string): Promise<void> {
    this.marking.add(group);
    try {
      for (let number = this.toMarkRead.get(group); number !== undefined; number = this.toMarkRead.get(group)) {
        this.toMarkRead.delete(group);
        // Not kept if it fails (locked meanwhile, say): the next look marks it again.
        const sent = await this.confide.markRead({ group, number }).then(
          () => true,
          () => false,
        );
        if (sent) this.marked.set(group, Math.max(number, this.marked.get(group) ?? 0));
      }
    } finally {
      this.marking.delete(group);
    }
  }

  /** Re-reads the group list soon, once for a burst of reasons. */
  private refreshSoon(): void {
    this.refreshTimer ??= setTimeout(() => {
      this.refreshTimer = undefined;
      void this.refreshGroups().catch(() => undefined);
    }, 300);
  }

  /** The idle lock (WEB-UX.md "Nothing leaks by accident"). */
  private async lockIfIdle(): Promise<void> {
    if (this.profile !== 'unlocked' || this.idleLockMinutes === 0) return;
    if (Date.now() - this.lastActivity < this.idleLockMinutes * 60_000) return;
    try {
      await this.lock();
    } catch {
      // Tried again at the next tick.
    }
  }

  /** Reads the profile's state; if it is unlocked already (another tab), loads the groups. */
  async start(): Promise<void> {
    this.profile = await this.confide.profileState();
    if (this.profile === 'unlocked') await this.unlocked();
  }

  /** After create or unlock: who we are, the groups, then the join screen if a link waits. */
  async unlocked(): Promise<void> {
    this.profile = 'unlocked';
    this.me = await this.confide.me();
    if (this.invite !== undefined) this.screen = { name: 'join' };
    await this.refreshGroups();
    await Promise.all(
      this.groups.map(async (group) => {
        if (!group.member) return;
        try {
          const page = await this.confide.history({ group: group.group, limit: 1 });
          const last = page.messages.at(-1);
          if (last !== undefined) this.lastAt = { ...this.lastAt, [group.group]: last.receivedAt };
        } catch {
          // A group whose history cannot be read shows no time.
        }
      }),
    );
  }

  /** Locks the profile and forgets everything on screen. */
  async lock(): Promise<void> {
    await this.saveDrafts();
    await this.confide.lock();
    this.reset('locked');
  }

  /** Deletes the profile from this browser, and the app shell the service worker cached. */
  async forget(): Promise<void> {
    await this.confide.forget();
    this.reset('none');
    await forgetServiceWorker();
  }

  /**
   * Another device of this account unlinked this one (an event, or found when unlocking): the
   * core deleted its keys; the profile is deleted from this browser as "forget this browser"
   * does, and the app shows why.
   */
  async wasUnlinked(): Promise<void> {
    this.unlinked = true;
    this.identityWarning = undefined;
    this.missedUpdates = false;
    this.postQuantumRefused = undefined;
    try {
      await this.forget();
    } catch {
      // The keys are gone already; what is left is deleted when the person forgets or starts again.
      this.reset('none');
    }
  }

  private reset(profile: ProfileState): void {
    this.profile = profile;
    this.me = undefined;
    this.groups = [];
    this.messages = {};
    this.lines = {};
    this.missedUpdates = false;
    this.postQuantumRefused = undefined;
    this.unread = {};
    this.warned = {};
    this.held = {};
    this.rounds = {};
    this.hiddenTopics = {};
    this.drafts.clear();
    this.marked.clear();
    this.names.clear();
    this.screen = { name: 'groups' };
  }

  /** Re-reads the group list. */
  async refreshGroups(): Promise<void> {
    this.groups = await this.confide.groups();
    // A group with a mark still on its way was read: the core's count is about to follow.
    this.unread = Object.fromEntries(
      this.groups.map((g) => [g.group, this.marking.has(g.group) || this.toMarkRead.has(g.group) ? 0 : g.unread]),
    );
    // Approved: the group the person waited for is theirs now (the `joined` event says so too).
    const screen = this.screen;
    if (screen.name === 'waiting' && this.groupInfo(screen.group)?.member === true) {
      await this.open(screen.group);
    }
  }

  /** The group as last listed. */
  groupInfo(group: string): GroupInfo | undefined {
    return this.groups.find((g) => g.group === group);
  }

  /** The group's name on this device. The core keeps no label yet, so it is made up. */
  labelOf(group: string): string {
    const info = this.groupInfo(group);
    // The person's own name for the group, kept on this device only.
    if (info?.label !== undefined && info.label !== null) return info.label;
    if (info?.privateWith !== undefined) return `Private with ${info.privateWith.displayName}`;
    const shared = this.groups.filter((g) => g.privateWith === undefined);
    const index = shared.findIndex((g) => g.group === group);
    return shared.length <= 1 ? 'Your group' : `Group ${index + 1}`;
  }

  /**
   * How a notification names a group: the person's own label, else never the other person's
   * name for a private conversation (a notification may show on a locked screen, and the name is
   * text the other person chose).
   */
  notificationLabel(group: string): string {
    const info = this.groupInfo(group);
    if (info?.label !== undefined && info.label !== null) return info.label;
    if (info?.privateWith !== undefined) return 'a private conversation';
    return this.labelOf(group);
  }

  /** The group on screen, if any. */
  get openGroup(): string | undefined {
    const screen = this.screen;
    return screen.name === 'group' || screen.name === 'info' ? screen.group : undefined;
  }

  /** Opens a group: loads its history and notices, and marks it read. */
  async open(group: string): Promise<void> {
    this.screen = { name: 'group', group };
    if (this.warned[group]) this.warned = { ...this.warned, [group]: false };
    await this.reload(group);
  }

  /** Reads a group's newest messages, notices, held messages, rounds and hidden topics again. */
  async reload(group: string): Promise<void> {
    const info = this.groupInfo(group);
    if (info === undefined || !info.member) return;
    const [page, notices] = await Promise.all([
      this.confide.history({ group, limit: PAGE }),
      this.confide.notices({ group }).catch(() => [] as GroupNotice[]),
    ]);
    for (const m of page.messages) this.names.set(m.sender, m.senderName);
    const known = this.messages[group] ?? [];
    const ids = new Set(page.messages.map((m) => m.id));
    const merged = [...page.messages, ...known.filter((m) => !ids.has(m.id))];
    merged.sort((a, b) => a.seq - b.seq);
    this.messages = { ...this.messages, [group]: merged };
    this.more = { ...this.more, [group]: page.messages.length >= PAGE };
    const fromNotices = notices.map((n) => noticeLine(n));
    const others = (this.lines[group] ?? []).filter((l) => !l.key.startsWith('notice:'));
    this.lines = { ...this.lines, [group]: [...others, ...fromNotices] };
    await Promise.all([this.refreshHeld(group), this.refreshRounds(group), this.refreshHiddenTopics(group)]);
  }

  /** Reads a group's check-in rounds again (opened, prompt, answers, closed). */
  async refreshRounds(group: string): Promise<void> {
    try {
      const list = await this.confide.rounds({ group });
      this.rounds = { ...this.rounds, [group]: list };
    } catch {
      // Shown as they were; the next change reads them again.
    }
  }

  /** Reads the topics this device hides in `group`. */
  async refreshHiddenTopics(group: string): Promise<void> {
    try {
      const topics = Array.from(await this.confide.hiddenTopics({ group }));
      this.hiddenTopics = { ...this.hiddenTopics, [group]: topics };
    } catch {
      // None known: messages show as the core marked them.
    }
  }

  /**
   * Hides `topics` in `group` on this person's devices (kept in the encrypted store, and sealed
   * to their own other devices only; never sent to the group or the server), and shows or hides
   * the loaded messages to match, as the core marks them from now on.
   */
  async setHiddenTopics(group: string, topics: number[]): Promise<void> {
    // A plain array: a component's state (a proxy) cannot be posted to the worker.
    await this.confide.setHiddenTopics({ group, topics: [...topics] });
    this.showHiddenTopics(group, topics);
    if (this.messages[group] !== undefined) void this.refreshRounds(group);
  }

  /** Another of this person's devices changed the topics they hide in `group`. */
  private async hiddenTopicsChanged(group: string): Promise<void> {
    try {
      this.showHiddenTopics(group, Array.from(await this.confide.hiddenTopics({ group })));
    } catch {
      return;
    }
    if (this.messages[group] !== undefined) void this.refreshRounds(group);
  }

  /** Marks the loaded messages of `group` hidden or not by `topics`. */
  private showHiddenTopics(group: string, topics: number[]): void {
    this.hiddenTopics = { ...this.hiddenTopics, [group]: [...topics] };
    const list = this.messages[group];
    if (list !== undefined) {
      const hide = new Set(topics);
      this.messages = {
        ...this.messages,
        [group]: list.map((m) => ({ ...m, hidden: m.warnings.some((w) => hide.has(w)) })),
      };
    }
  }

  /** A moderator added warnings to a message: it shows them, and is hidden if one is hidden here. */
  private warningAdded(group: string, message: string, warnings: number[]): void {
    const list = this.messages[group];
    if (list === undefined) return;
    const hide = new Set(this.hiddenTopics[group] ?? []);
    this.messages = {
      ...this.messages,
      [group]: list.map((m) =>
        // An addition can hide a message, never show one the core hid.
        m.id === message ? { ...m, warnings: [...warnings], hidden: m.hidden || warnings.some((w) => hide.has(w)) } : m,
      ),
    };
  }

  /** Reads again what the core keeps to send in `group` ("waiting to send"). */
  async refreshHeld(group: string): Promise<void> {
    try {
      const list = await this.confide.held({ group });
      this.held = { ...this.held, [group]: list };
    } catch {
      // Shown as it was; the next change reads it again.
    }
  }

  /** Sends a message that waits because people joined after it was written. */
  async sendHeldAnyway(group: string, id: string, epoch: number): Promise<void> {
    try {
      await this.confide.sendHeldAnyway({ group, id, epoch });
    } finally {
      // Refused because the group changed since: the list now names who is there.
      await this.refreshHeld(group);
    }
  }

  /** Discards a message that waits: it is never sent. */
  async discardHeld(group: string, id: string): Promise<void> {
    await this.confide.discardHeld({ group, id });
    await this.refreshHeld(group);
  }

  /** Loads the page of messages before the oldest one loaded. */
  async loadEarlier(group: string): Promise<void> {
    const list = this.messages[group] ?? [];
    const first = list[0];
    if (first === undefined) return;
    const page = await this.confide.history({ group, before: first.seq, limit: PAGE });
    for (const m of page.messages) this.names.set(m.sender, m.senderName);
    const ids = new Set(list.map((m) => m.id));
    const merged = [...page.messages.filter((m) => !ids.has(m.id)), ...list].sort((a, b) => a.seq - b.seq);
    this.messages = { ...this.messages, [group]: merged };
    this.more = { ...this.more, [group]: page.messages.length >= PAGE };
  }

  /** Opens (or reopens) a private conversation with `user`, met in `group`. */
  async openPrivate(group: string, user: string): Promise<void> {
    const conversation = await this.confide.openPrivate({ group, with: user });
    await this.refreshGroups();
    await this.open(conversation);
  }

  /** Adds a message (received, or sent from this device) to its group. */
  addMessage(message: ChatMessage): void {
    const group = message.group;
    this.names.set(message.sender, message.senderName);
    this.lastAt = { ...this.lastAt, [group]: message.receivedAt };
    const list = this.messages[group];
    if (list !== undefined && !list.some((m) => m.id === message.id)) {
      this.messages = { ...this.messages, [group]: [...list, message].sort((a, b) => a.seq - b.seq) };
    }
    // A prompt, an answer or a pass: the round's block shows it (the core lists it in `rounds`).
    if (message.round !== undefined && list !== undefined) void this.refreshRounds(group);
    // The person's own message: what still waits to send is the core's list (`held`).
    if (message.sender === this.me?.user) return;
    if (this.openGroup !== group || document.hidden) {
      this.unread = { ...this.unread, [group]: (this.unread[group] ?? 0) + 1 };
    }
  }

  /**
   * Marks `group` in the groups list as having a warning to read, unless its conversation is
   * on screen (its info screen is not: the warning is in the conversation).
   */
  private markWarned(group: string): void {
    const reading = this.screen.name === 'group' && this.screen.group === group;
    if (!reading) this.warned = { ...this.warned, [group]: true };
  }

  /** Adds `line` to `group`'s conversation, unless a line with its key is there; whether it was added. */
  private addLine(group: string, line: SystemLine): boolean {
    const list = this.lines[group] ?? [];
    if (list.some((l) => l.key === line.key)) return false;
    this.lines = { ...this.lines, [group]: [...list, line] };
    return true;
  }

  private nameOf(user: string | undefined): string {
    if (user === undefined) return 'someone';
    if (user === this.me?.user) return 'you';
    return this.names.get(user) ?? 'a member';
  }

  /** Applies one core event. */
  handle(event: CoreEvent): void {
    notifyEvent(event, { openGroup: this.openGroup, labelOf: (group) => this.notificationLabel(group) });
    this.postQuantumRefused = postQuantumAfter(this.postQuantumRefused, event);
    switch (event.type) {
      case 'connection':
        this.connection = event.state;
        return;
      case 'connected':
        this.connection = 'online';
        return;
      case 'disconnected':
        this.connection = 'offline';
        return;
      case 'message':
      case 'sent':
        this.addMessage(event.message);
        return;
      case 'heldChanged':
      case 'heldNeedsConfirm':
        void this.refreshHeld(event.group);
        return;
      case 'sendFailed':
        void this.refreshHeld(event.group);
        this.addLine(event.group, {
          key: `failed:${Date.now()}`,
          at: Date.now(),
          // The code's meaning in our words: `reason` is the server's own. (The words are not
          // in the box any more: it was emptied when the core kept the message.)
          text: `A message you wrote could not be sent: ${errorText({ code: event.code, message: '' })}.`,
          kind: 'system',
        });
        return;
      case 'groupChanged': {
        const change = event.change;
        const text = changeText(change.action, this.nameOf(change.author), this.nameOf(change.target));
        if (text !== undefined) {
          this.addLine(change.group, { key: `op:${change.opSeq}`, at: change.at, text, kind: 'system' });
        }
        this.changes++;
        void this.refreshGroups().catch(() => undefined);
        // Who is in the group decides which waiting messages need the person's word.
        if (this.held[change.group] !== undefined) void this.refreshHeld(change.group);
        return;
      }
      case 'notice':
        this.addLine(event.notice.group, noticeLine(event.notice));
        return;
      case 'joined':
        void this.refreshGroups().catch(() => undefined);
        return;
      case 'read':
        // Read here or in another tab: the counts come from the core again.
        this.refreshSoon();
        return;
      case 'synced':
        // A sync may bring groups no other event names (a newly linked device's groups, which
        // arrive once their logs list it).
        this.refreshSoon();
        return;
      case 'invited':
      case 'messageWaiting':
      case 'roleChanged':
      // A refused group is said by the conversation's banner while its `syncRefused` lasts.
      case 'syncRefused':
        this.changes++;
        void this.refreshGroups().catch(() => undefined);
        return;
      case 'caughtUp': {
        // The group's "your messages wait" line gets its answer.
        const behind = (this.lines[event.group] ?? []).findLast((line) => line.key.startsWith('behind:'));
        if (behind !== undefined) this.addLine(event.group, caughtUpLine(behind, Date.now()));
        this.changes++;
        void this.refreshGroups().catch(() => undefined);
        return;
      }
      case 'removed':
        this.changes++;
        this.addLine(event.group, {
          key: `removed:${event.at}`,
          at: event.at,
          text: 'You were removed from this group.',
          kind: 'system',
        });
        void this.refreshGroups().catch(() => undefined);
        return;
      case 'pinned':
        this.changes++;
        return;
      case 'keyChanged':
        this.addLine(event.group, {
          key: `key:${event.user}:${Date.now()}`,
          at: Date.now(),
          text: `${event.displayName}'s safety number changed. This usually means they set Confide up again on a new device. You can compare safety numbers in the group's info.`,
          kind: 'system',
        });
        this.markWarned(event.group);
        return;
      case 'messageRejected':
        this.addLine(event.rejection.group, {
          key: `rejected:${event.rejection.seq}`,
          at: Date.now(),
          afterSeq: event.rejection.seq,
          text: 'A message could not be verified and is hidden.',
          kind: 'placeholder',
        });
        return;
      case 'devicesChanged':
        if (event.user === this.me?.user) this.devicesChanged++;
        else this.changes++;
        return;
      case 'identityMisuse':
        this.identityWarning =
          event.user === this.me?.user ? { own: true } : { own: false, name: this.names.get(event.user) ?? 'A member' };
        return;
      case 'deviceUnlinked':
        void this.wasUnlinked();
        return;
      case 'warningAdded':
        this.warningAdded(event.group, event.message, Array.from(event.warnings));
        // The message may be a round's prompt or answer: the round block hides it too.
        if (this.messages[event.group] !== undefined) void this.refreshRounds(event.group);
        return;
      case 'ownSettingsChanged':
        if (event.group !== undefined) void this.hiddenTopicsChanged(event.group);
        return;
      case 'roundChanged':
        if (this.messages[event.group] !== undefined) void this.refreshRounds(event.group);
        return;
      case 'messagesDeleted': {
        const list = this.messages[event.group];
        if (list !== undefined) {
          const gone = new Set(event.messages);
          for (const m of list) {
            if (gone.has(m.id)) {
              this.addLine(event.group, {
                key: `deleted:${m.id}`,
                at: m.receivedAt,
                afterSeq: m.seq,
                text: 'This message was deleted.',
                kind: 'placeholder',
              });
            }
          }
          this.messages = { ...this.messages, [event.group]: list.filter((m) => !gone.has(m.id)) };
        }
        return;
      }
      case 'groupRejected':
      case 'groupBehind':
      case 'orderWarning': {
        const { group, line } = groupWarningLine(event, Date.now());
        // A change the server sent that was refused needs nothing of the person (its line says
        // so): not marked. Messages waiting for the group to catch up, or one out of place, are.
        if (this.addLine(group, line) && event.type !== 'groupRejected') this.markWarned(group);
        return;
      }
      case 'eventsDropped':
        // Nothing stored is lost, but what is shown may be stale: read it again.
        this.missedUpdates = true;
        this.changes++;
        this.devicesChanged++;
        void this.refreshGroups().catch(() => undefined);
        if (this.openGroup !== undefined) void this.reload(this.openGroup).catch(() => undefined);
        return;
      case 'postQuantumKeyRefused':
        // Kept by postQuantumAfter above.
        return;
      case 'joinRequest':
      case 'report':
      case 'urgentRequest':
        // The facilitator's "Needs you" queue listens for these itself (facilitator/needs-you.ts).
        return;
      default: {
        // Every event the core sends is handled above: a new one fails the type check here
        // instead of being ignored without a word.
        const unhandled: never = event;
        void unhandled;
        return;
      }
    }
  }
}

/** A notice as a system line. */
function noticeLine(notice: GroupNotice): SystemLine {
  const by = notice.byName;
  let text: string;
  switch (notice.kind.type) {
    case 'removed':
      text = `${notice.kind.name} was removed from the group.`;
      break;
    case 'left':
      text = `${by} left the group.`;
      break;
    case 'messageDeleted':
      text = `${by} deleted a message for everyone.`;
      break;
    case 'devicesUpdated':
      text = `${by} updated their devices.`;
      break;
    default:
      text = `${by} changed the group.`;
  }
  const line: SystemLine = {
    key: `notice:${notice.opSeq}:${notice.index}`,
    at: notice.at,
    text,
    kind: notice.kind.type === 'messageDeleted' ? 'placeholder' : 'system',
  };
  if (notice.afterSeq !== undefined) line.afterSeq = notice.afterSeq;
  return line;
}

/** A log change in plain words (never a reason), or nothing for ones members need not see. */
function changeText(action: string, author: string, target: string): string | undefined {
  switch (action) {
    case 'add':
      return `${target === 'you' ? 'You' : target} joined the group.`;
    case 'join':
      return `${author === 'you' ? 'You' : author} joined the group.`;
    case 'leave':
      return `${author === 'you' ? 'You' : author} left the group.`;
    case 'set_slow_mode':
      return 'Slow mode was changed.';
    case 'set_open_hours':
      return 'The open hours were changed.';
    case 'mute':
      return `${target === 'you' ? 'You were' : `${target} was`} muted for a while.`;
    case 'unmute':
      return `${target === 'you' ? 'You' : target} can post again.`;
    case 'lock':
      return 'The chat was paused by a facilitator.';
    case 'unlock':
      return 'The chat is open again.';
    case 'set_role':
    case 'role':
      return `${author} changed ${target === 'you' ? 'your' : `${target}'s`} role.`;
    default:
      return undefined;
  }
}
