//! The local profile: a directory holding the encrypted store and the one file that must be
//! read before the passphrase unlocks it, `settings.json` (the server and its certificate pin).
//!
//! Everything private is in the store: identity, messages, and the labels the user gave groups
//! and conversations (kept on this device only, never sent anywhere; see
//! [`confide_client::local`]). The directory and every directory of the profile in it are mode
//! 0700 and every file of the profile 0600 (fixed when a profile is opened, so profiles made by
//! older versions are too). Only the profile's own entries are changed — the directory itself,
//! `settings.json` and the store — never anything else in it; and a new profile is only made in
//! a directory that is empty or does not exist yet.
//! Labels older versions kept in `settings.json` are moved into the store when the profile is
//! next opened, and the file is rewritten without them.

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use confide_client::store::restrict_permissions;
use confide_client::{Client, ClientConfig, ClientError, Events, ServerTrust};
use confide_protocol::{GroupId, UserId};

/// Environment variable naming the profile directory.
pub const HOME_ENV: &str = "CONFIDE_HOME";
/// Environment variable holding the store passphrase (for scripts).
pub const PASSPHRASE_ENV: &str = "CONFIDE_PASSPHRASE";
/// The profile's settings file (no secrets in it).
const SETTINGS_FILE: &str = "settings.json";
/// Where a new settings file is written before it replaces the old one.
const SETTINGS_TEMP_FILE: &str = "settings.json.new";
/// The encrypted store's directory inside the profile.
const STORE_DIR: &str = "store";
use confide_passphrase::{MIN_PASSPHRASE_CHARS, Strength};

/// Makes the profile in `dir` private to this user: the directory itself (mode 0700, not what
/// else it may hold), the settings files (0600) and the store, recursively. Symbolic links are
/// left alone.
fn restrict_profile(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        /// Owner may read, write and enter; nobody else anything.
        const PRIVATE_DIR: u32 = 0o700;
        let meta = std::fs::symlink_metadata(dir)?;
        if meta.is_dir() && meta.permissions().mode() & 0o7777 != PRIVATE_DIR {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR))?;
        }
    }
    for name in [SETTINGS_FILE, SETTINGS_TEMP_FILE, STORE_DIR] {
        restrict_permissions(&dir.join(name))?;
    }
    Ok(())
}

/// What a profile keeps outside the encrypted store. Only what is needed to open the store
/// may be here, because it is read before the passphrase is known: the server to connect to
/// and its certificate pin both go into the [`ClientConfig`] the store is opened with. Neither
/// is secret (both are public facts about the server), though together they say which service
/// this profile uses; nothing the user wrote or chose about their groups belongs here.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Settings {
    /// `wss://host:port`.
    pub server: String,
    /// The server certificate's SHA-256 fingerprint, if pinned.
    pub pin: Option<String>,
    /// Labels as older versions kept them here, in plaintext (label → group): only read, to
    /// move them into the encrypted store ([`Profile::open`]); never written.
    #[serde(default, rename = "labels", skip_serializing)]
    legacy_labels: BTreeMap<String, GroupId>,
}

impl Settings {
    /// Settings for a new profile.
    pub fn new(server: String, pin: Option<String>) -> Settings {
        Settings {
            server,
            pin,
            ..Settings::default()
        }
    }
}

/// An opened profile directory.
pub struct Profile {
    /// The directory.
    pub dir: PathBuf,
    /// Its settings.
    pub settings: Settings,
    /// The labels of groups and conversations, from the encrypted store once it is open.
    labels: BTreeMap<GroupId, String>,
}

impl Profile {
    /// The directory from `--profile`, `$CONFIDE_HOME`, or `~/.confide`.
    pub fn locate(explicit: Option<&Path>) -> PathBuf {
        if let Some(dir) = explicit {
            return dir.to_path_buf();
        }
        if let Some(dir) = std::env::var_os(HOME_ENV) {
            return PathBuf::from(dir);
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        home.join(".confide")
    }

    /// Whether `dir` holds a profile (its settings file), without reading it.
    pub fn exists(dir: &Path) -> bool {
        dir.join(SETTINGS_FILE).exists()
    }

    /// Loads an existing profile, first making its files readable only by this user.
    pub fn load(dir: &Path) -> anyhow::Result<Profile> {
        let path = dir.join(SETTINGS_FILE);
        if path.exists() {
            restrict_profile(dir).with_context(|| {
                format!(
                    "cannot make {} readable only by you; check who owns it",
                    dir.display()
                )
            })?;
        }
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no Confide profile in {} (run `confide init` first)",
                dir.display()
            )
        })?;
        let settings =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        Ok(Profile {
            dir: dir.to_path_buf(),
            settings,
            labels: BTreeMap::new(),
        })
    }

    /// Whether a new profile may be made in `dir`: it holds no profile and nothing else.
    pub fn check_new(dir: &Path) -> anyhow::Result<()> {
        if dir.join(SETTINGS_FILE).exists() && !dir.join(STORE_DIR).exists() {
            bail!(
                "{} holds an unfinished profile (a `confide init` that failed): remove that \
                 directory and run `confide init` again",
                dir.display()
            );
        }
        if dir.join(SETTINGS_FILE).exists() {
            bail!("a profile already exists in {}", dir.display());
        }
        // Never a directory holding other things (`--profile ~`): it would be made private,
        // and removed again if registering fails.
        if std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some()) {
            bail!(
                "{} is not empty and holds no Confide profile: give a new or empty directory \
                 for the profile",
                dir.display()
            );
        }
        Ok(())
    }

    /// Creates a new profile directory (readable only by this user) with these settings.
    /// Returns the profile and a record of what was created, to undo it if `init` fails.
    pub fn create(dir: &Path, settings: Settings) -> anyhow::Result<(Profile, Created)> {
        Self::check_new(dir)?;
        // The directory and any missing parents are made here: only those are removed again.
        // Only a directory that is certainly missing counts as one made here: one that could not
        // be looked at (no permission, say) may well exist and hold someone's files.
        let mut made_dirs: Vec<PathBuf> = Vec::new();
        for d in dir.ancestors().take_while(|d| !d.as_os_str().is_empty()) {
            match std::fs::symlink_metadata(d) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    made_dirs.push(d.to_path_buf())
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "cannot tell whether {} exists: nothing was created",
                        d.display()
                    )));
                }
            }
        }
        made_dirs.reverse();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let created = Created {
            dir: dir.to_path_buf(),
            made_dirs,
        };
        let profile = Profile {
            dir: dir.to_path_buf(),
            settings,
            labels: BTreeMap::new(),
        };
        let made = restrict_profile(dir)
            .with_context(|| format!("making {} readable only by you", dir.display()))
            .and_then(|()| profile.save());
        if let Err(e) = made {
            created.undo();
            return Err(e);
        }
        Ok((profile, created))
    }

    /// Writes the settings back: to a new file readable only by this user, which then
    /// replaces the old one (so a crash leaves the old or the new file, never half of one).
    pub fn save(&self) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.settings)?;
        let temp = self.dir.join(SETTINGS_TEMP_FILE);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let write = || -> std::io::Result<()> {
            let mut file = options.open(&temp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, self.dir.join(SETTINGS_FILE))
        };
        write().with_context(|| format!("writing {}", self.dir.join(SETTINGS_FILE).display()))
    }

    /// The client configuration for this profile.
    pub fn client_config(&self) -> ClientConfig {
        let trust = match &self.settings.pin {
            Some(pin) => ServerTrust::Pinned(pin.clone()),
            None => ServerTrust::SystemRoots,
        };
        ClientConfig::new(
            self.settings.server.clone(),
            trust,
            self.dir.join(STORE_DIR),
        )
    }

    /// Opens the encrypted store and connects; reads the labels from the store, after moving
    /// any an older version left in `settings.json` into it.
    pub async fn open(&mut self, passphrase: &[u8]) -> anyhow::Result<(Client, Events)> {
        let (client, events) = Client::open(self.client_config(), passphrase).await?;
        if let Err(e) = self.move_legacy_labels(&client).await {
            client.shutdown().await;
            return Err(e);
        }
        match client.labels().await {
            Ok(labels) => self.labels = labels,
            Err(e) => {
                client.shutdown().await;
                return Err(e.into());
            }
        }
        Ok((client, events))
    }

    /// Moves labels from a `settings.json` of an older version into the encrypted store and
    /// rewrites the file without them. A label the store already has for a group wins; of
    /// several old labels for one group the first (alphabetically) is kept.
    async fn move_legacy_labels(&mut self, client: &Client) -> anyhow::Result<()> {
        if self.settings.legacy_labels.is_empty() {
            return Ok(());
        }
        let mut labels = client.labels().await?;
        for (label, group) in std::mem::take(&mut self.settings.legacy_labels) {
            if labels.contains_key(&group) || labels.values().any(|l| *l == label) {
                continue;
            }
            match client.set_label(group, Some(&label)).await {
                Ok(()) => {
                    labels.insert(group, label);
                }
                Err(ClientError::Invalid(why)) => {
                    eprintln!(
                        "confide: a label from settings.json was not kept ({why}); give the group a new one with `confide group label {group} NEW`"
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.save()
    }

    /// Gives `group` the label `label` on this device, in the encrypted store; a group that had
    /// this label loses it (a label names one group).
    pub async fn set_label(
        &mut self,
        client: &Client,
        group: GroupId,
        label: &str,
    ) -> anyhow::Result<()> {
        let others: Vec<GroupId> = self
            .labels
            .iter()
            .filter(|(g, l)| **g != group && *l == label)
            .map(|(g, _)| *g)
            .collect();
        for other in others {
            client.set_label(other, None).await?;
            self.labels.remove(&other);
        }
        client.set_label(group, Some(label)).await?;
        self.labels.insert(group, label.to_string());
        Ok(())
    }

    /// The labels of groups and conversations (after [`Self::open`]).
    pub fn labels(&self) -> &BTreeMap<GroupId, String> {
        &self.labels
    }

    /// A group by label or id.
    pub fn group(&self, name: &str) -> anyhow::Result<GroupId> {
        if let Some((id, _)) = self.labels.iter().find(|(_, l)| *l == name) {
            return Ok(*id);
        }
        parse_id(name).map(GroupId).ok_or_else(|| {
            anyhow::anyhow!("no group labelled or with id {name:?} (see `confide group list`)")
        })
    }

    /// The label of a group, if it has one.
    pub fn label_of(&self, group: &GroupId) -> Option<&str> {
        self.labels.get(group).map(String::as_str)
    }
}

/// What `confide init` created, so that a failed init removes exactly that and nothing else.
#[must_use = "a failed init must undo what it created"]
pub struct Created {
    /// The profile directory.
    dir: PathBuf,
    /// The directories init made (the profile directory and any missing parents), outermost
    /// first; a directory that existed before (empty) is kept.
    made_dirs: Vec<PathBuf>,
}

impl Created {
    /// Removes what init created: its files in the profile directory and the store, then the
    /// directories it made, if they are empty by then. Nothing is followed through a symbolic
    /// link (a link found where init wrote a file was not made by init and is left), and the
    /// store is removed only while this process holds its lock, so never while another
    /// `confide` has it open. Returns what could not be removed, for the person to see.
    pub fn undo(self) -> Vec<String> {
        let mut left = Vec::new();
        for name in [SETTINGS_FILE, SETTINGS_TEMP_FILE] {
            let path = self.dir.join(name);
            match std::fs::symlink_metadata(&path) {
                Ok(meta) if meta.is_file() => {
                    if let Err(e) = std::fs::remove_file(&path) {
                        left.push(format!("{} ({e})", path.display()));
                    }
                }
                Ok(_) => left.push(format!("{} (not a file this init wrote)", path.display())),
                Err(_) => {}
            }
        }
        let store = self.dir.join(STORE_DIR);
        match std::fs::symlink_metadata(&store) {
            Ok(meta) if meta.is_dir() => {
                match confide_client::store::StoreLock::acquire(&store) {
                    // `remove_dir_all` never follows symbolic links inside the directory.
                    Ok(_lock) => {
                        if let Err(e) = std::fs::remove_dir_all(&store) {
                            left.push(format!("{} ({e})", store.display()));
                        }
                    }
                    Err(e) => left.push(format!("{} ({e})", store.display())),
                }
            }
            Ok(_) => left.push(format!("{} (not a store this init made)", store.display())),
            Err(_) => {}
        }
        for made in self.made_dirs.iter().rev() {
            // Only an empty directory goes: anything someone else put there stays.
            if std::fs::symlink_metadata(made).is_ok_and(|m| m.is_dir())
                && let Err(e) = std::fs::remove_dir(made)
            {
                // Holding what someone else put there is no failure of the undo.
                if e.kind() != std::io::ErrorKind::DirectoryNotEmpty {
                    left.push(format!("{} ({e})", made.display()));
                }
                break;
            }
        }
        left
    }
}

/// Parses a base64 id of `N` bytes.
pub fn parse_id<const N: usize>(text: &str) -> Option<[u8; N]> {
    let bytes = confide_protocol::encoding::b64_decode(text).ok()?;
    bytes.try_into().ok()
}

/// A user by `@name`, name or base64 id, among the group's members.
pub async fn user(client: &Client, group: GroupId, name: &str) -> anyhow::Result<UserId> {
    let members = client.members(group).await?;
    let wanted = name.trim_start_matches('@');
    let by_name: Vec<_> = members
        .iter()
        .filter(|m| m.display_name == wanted)
        .collect();
    match by_name.as_slice() {
        [one] => return Ok(one.user),
        [] => {}
        _ => bail!("several members are called {wanted:?}: use their user id (`confide members`)"),
    }
    if let Some(id) = parse_id(wanted) {
        return Ok(UserId(id));
    }
    bail!("no member called {wanted:?} in this group")
}

/// The passphrase: from `$CONFIDE_PASSPHRASE` (scripts), or asked for on the terminal. A new
/// one (`new`: asked twice on the terminal) must have [`MIN_PASSPHRASE_CHARS`] characters and a
/// strength of at least [`confide_passphrase::MIN_PASSPHRASE_SCORE`]
/// ([`confide_passphrase::strength`]; `user_inputs`, such as the
/// pseudonym, count as easy to guess); its strength is shown on standard error.
pub fn passphrase(new: bool, user_inputs: &[&str]) -> anyhow::Result<zeroize_string::Secret> {
    let secret = if let Some(p) = std::env::var_os(PASSPHRASE_ENV) {
        zeroize_string::Secret(p.to_string_lossy().into_owned())
    } else {
        let prompt = if new {
            format!(
                "New passphrase (at least {MIN_PASSPHRASE_CHARS} characters; a few unrelated \
                 words work well): "
            )
        } else {
            "Passphrase: ".to_string()
        };
        let first = zeroize_string::Secret(
            rpassword::prompt_password(prompt).context("reading the passphrase")?,
        );
        if new {
            // Checked before it is asked again, so a weak one is not typed twice for nothing.
            check_new_passphrase(&first.0, user_inputs)?;
            let second = zeroize_string::Secret(
                rpassword::prompt_password("Repeat it: ").context("reading the passphrase")?,
            );
            if first.0 != second.0 {
                bail!("the passphrases differ: nothing was created; run `confide init` again");
            }
        }
        first
    };
    if new {
        let strength = check_new_passphrase(&secret.0, user_inputs)?;
        eprintln!("Passphrase strength: {strength}.");
    }
    Ok(secret)
}

/// Refuses a new passphrase that is too short or too easy to guess ([`confide_passphrase`]'s
/// rule, shared with the web app), saying why and what helps; returns its strength otherwise.
fn check_new_passphrase(passphrase: &str, user_inputs: &[&str]) -> anyhow::Result<Strength> {
    confide_passphrase::check_new(passphrase, user_inputs)
        .map_err(|refusal| anyhow::anyhow!("{refusal}: nothing was created"))
}

/// A passphrase string that is wiped when dropped.
pub mod zeroize_string {
    /// The secret.
    pub struct Secret(pub String);

    impl Drop for Secret {
        fn drop(&mut self) {
            // Overwrite the bytes before the allocation is freed.
            let len = self.0.len();
            self.0.clear();
            self.0.extend(std::iter::repeat_n('\0', len));
            self.0.clear();
        }
    }

    impl Secret {
        /// The bytes.
        pub fn bytes(&self) -> &[u8] {
            self.0.as_bytes()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use confide_passphrase::MIN_PASSPHRASE_SCORE;

    #[test]
    fn weak_passphrases_are_refused_with_a_hint_and_good_ones_show_their_strength() {
        for weak in [
            "password",
            "12345678",
            "aaaaaaaaaaaa",
            "qwertyuiop",
            "Alice123",
        ] {
            let refused = check_new_passphrase(weak, &["Alice", "confide"])
                .unwrap_err()
                .to_string();
            assert!(
                refused.contains("easy to guess") && refused.contains("unrelated words"),
                "{weak:?}: {refused}"
            );
        }
        // Still the length rule first, with its own message.
        let short = check_new_passphrase("x7#Qp", &[]).unwrap_err().to_string();
        assert!(short.contains("at least 8 characters"), "{short}");
        assert!(short.ends_with(": nothing was created"), "{short}");
        let good = check_new_passphrase("maple trumpet gravel onion", &[]).unwrap();
        assert!(good.score >= MIN_PASSPHRASE_SCORE);
        assert!(good.to_string().ends_with("of 4)"), "{good}");
        // The test suites' passphrases pass.
        assert!(check_new_passphrase("a long passphrase", &["Alice", "confide"]).is_ok());
    }

    #[test]
    fn a_failed_init_removes_only_what_it_made() {
        let root = tempfile::tempdir().unwrap();
        // Into an empty directory that existed before: the directory stays, empty.
        let existing = root.path().join("existing");
        std::fs::create_dir(&existing).unwrap();
        let (_, created) =
            Profile::create(&existing, Settings::new("wss://x".into(), None)).unwrap();
        std::fs::create_dir(existing.join(STORE_DIR)).unwrap();
        std::fs::write(existing.join(STORE_DIR).join("db"), b"x").unwrap();
        assert!(created.undo().is_empty());
        assert!(existing.is_dir());
        assert_eq!(std::fs::read_dir(&existing).unwrap().count(), 0);
        // New directories (and parents) go; a file someone else put there keeps them.
        let nested = root.path().join("a").join("b");
        let (_, created) = Profile::create(&nested, Settings::new("wss://x".into(), None)).unwrap();
        std::fs::write(root.path().join("a").join("other"), b"keep").unwrap();
        assert!(created.undo().is_empty());
        assert!(!nested.exists());
        assert!(root.path().join("a").join("other").exists());
        // A symbolic link where init wrote its settings is not followed.
        #[cfg(unix)]
        {
            let target = root.path().join("precious");
            std::fs::write(&target, b"keep me").unwrap();
            let dir = root.path().join("linked");
            let (_, created) =
                Profile::create(&dir, Settings::new("wss://x".into(), None)).unwrap();
            std::fs::remove_file(dir.join(SETTINGS_FILE)).unwrap();
            std::os::unix::fs::symlink(&target, dir.join(SETTINGS_FILE)).unwrap();
            let left = created.undo();
            assert_eq!(left.len(), 1, "{left:?}");
            assert!(left[0].contains("not a file this init wrote"), "{left:?}");
            assert_eq!(std::fs::read(&target).unwrap(), b"keep me");
        }
    }
}
