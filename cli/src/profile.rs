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
/// The fewest characters a new passphrase may have (not counting spaces at either end).
pub const MIN_PASSPHRASE_CHARS: usize = 8;

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
    pub fn create(dir: &Path, settings: Settings) -> anyhow::Result<Profile> {
        Self::check_new(dir)?;
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        restrict_profile(dir)
            .with_context(|| format!("making {} readable only by you", dir.display()))?;
        let profile = Profile {
            dir: dir.to_path_buf(),
            settings,
            labels: BTreeMap::new(),
        };
        profile.save()?;
        Ok(profile)
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
/// one (`new`: asked twice on the terminal) must have [`MIN_PASSPHRASE_CHARS`] characters.
pub fn passphrase(new: bool) -> anyhow::Result<zeroize_string::Secret> {
    let secret = if let Some(p) = std::env::var_os(PASSPHRASE_ENV) {
        zeroize_string::Secret(p.to_string_lossy().into_owned())
    } else {
        let prompt = if new {
            format!("New passphrase (at least {MIN_PASSPHRASE_CHARS} characters): ")
        } else {
            "Passphrase: ".to_string()
        };
        let first = zeroize_string::Secret(
            rpassword::prompt_password(prompt).context("reading the passphrase")?,
        );
        if new {
            let second = zeroize_string::Secret(
                rpassword::prompt_password("Repeat it: ").context("reading the passphrase")?,
            );
            if first.0 != second.0 {
                bail!("the passphrases differ: nothing was created; run `confide init` again");
            }
        }
        first
    };
    if new && secret.0.trim().chars().count() < MIN_PASSPHRASE_CHARS {
        bail!(
            "the passphrase must have at least {MIN_PASSPHRASE_CHARS} characters (a few words \
             are easier to remember and harder to guess): nothing was created"
        );
    }
    Ok(secret)
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
