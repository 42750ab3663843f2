//! The local profile: where the encrypted store lives, which server it talks to, and the
//! labels the user gave to groups (kept on this device only, never sent anywhere).

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use confide_client::{Client, ClientConfig, Events, ServerTrust};
use confide_protocol::{GroupId, UserId};

/// Environment variable naming the profile directory.
pub const HOME_ENV: &str = "CONFIDE_HOME";
/// Environment variable holding the store passphrase (for scripts).
pub const PASSPHRASE_ENV: &str = "CONFIDE_PASSPHRASE";
/// The profile's settings file (no secrets in it).
const SETTINGS_FILE: &str = "settings.json";
/// The encrypted store's directory inside the profile.
const STORE_DIR: &str = "store";

/// Non-secret settings of a profile.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Settings {
    /// `wss://host:port`.
    pub server: String,
    /// The server certificate's SHA-256 fingerprint, if pinned.
    pub pin: Option<String>,
    /// Group labels chosen on this device.
    #[serde(default)]
    pub labels: BTreeMap<String, GroupId>,
}

/// An opened profile directory.
pub struct Profile {
    /// The directory.
    pub dir: PathBuf,
    /// Its settings.
    pub settings: Settings,
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

    /// Loads an existing profile.
    pub fn load(dir: &Path) -> anyhow::Result<Profile> {
        let path = dir.join(SETTINGS_FILE);
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
        })
    }

    /// Creates a new profile directory with these settings.
    pub fn create(dir: &Path, settings: Settings) -> anyhow::Result<Profile> {
        if dir.join(SETTINGS_FILE).exists() {
            bail!("a profile already exists in {}", dir.display());
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let profile = Profile {
            dir: dir.to_path_buf(),
            settings,
        };
        profile.save()?;
        Ok(profile)
    }

    /// Writes the settings back.
    pub fn save(&self) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.settings)?;
        std::fs::write(self.dir.join(SETTINGS_FILE), text)?;
        Ok(())
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

    /// Opens the encrypted store and connects.
    pub async fn open(&self, passphrase: &[u8]) -> anyhow::Result<(Client, Events)> {
        Ok(Client::open(self.client_config(), passphrase).await?)
    }

    /// A group by label or id.
    pub fn group(&self, name: &str) -> anyhow::Result<GroupId> {
        if let Some(id) = self.settings.labels.get(name) {
            return Ok(*id);
        }
        parse_id(name).map(GroupId).ok_or_else(|| {
            anyhow::anyhow!("no group labelled or with id {name:?} (see `confide group list`)")
        })
    }

    /// The label of a group, if it has one.
    pub fn label_of(&self, group: &GroupId) -> Option<&str> {
        self.settings
            .labels
            .iter()
            .find(|(_, g)| *g == group)
            .map(|(l, _)| l.as_str())
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

/// The passphrase: from `$CONFIDE_PASSPHRASE` (scripts), or asked for on the terminal.
pub fn passphrase(confirm: bool) -> anyhow::Result<zeroize_string::Secret> {
    if let Some(p) = std::env::var_os(PASSPHRASE_ENV) {
        return Ok(zeroize_string::Secret(p.to_string_lossy().into_owned()));
    }
    let first = rpassword::prompt_password("Passphrase: ").context("reading the passphrase")?;
    if confirm {
        let second = rpassword::prompt_password("Repeat it: ")?;
        if first != second {
            bail!("the passphrases differ");
        }
    }
    Ok(zeroize_string::Secret(first))
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
