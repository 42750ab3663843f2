//! `confide device`: linking this computer as a new device of an existing person, linking a
//! new device from this one, listing this person's devices and unlinking one (PROTOCOL.md
//! §3.6–3.8).
//!
//! Linking is safe only if the person compares the numbers both devices show: each device
//! shows its numbers and asks the person to type the numbers the OTHER device shows, so that
//! a glance is not enough to say yes. If they differ, someone may be in the middle, and the
//! link is stopped on both devices. The name the other device sends is someone else's text
//! until the numbers match: it is shown only through [`crate::text`].

use std::path::Path;

use anyhow::{Context as _, bail};
use serde_json::json;

use confide_client::{Client, ClientError};
use confide_protocol::DeviceId;
use confide_protocol::frames::ErrorCode;

use crate::commands::{Out, Said};
use crate::profile::{self, Profile, Settings, zeroize_string::Secret};
use crate::text::one_line;
use crate::{Args, DeviceCommand, EXIT_FAILURE, EXIT_UNLINKED};

/// What both devices say when the numbers the person typed are not the ones shown.
pub const MISMATCH: &str = "The numbers differ: someone may be in the middle. Nothing was linked.";

/// What is said when someone other than this person's devices holds their identity key.
pub const IDENTITY_MISUSE: &str = "warning: an identity key was used outside its person's list \
     of devices (two lists of one version, or a list made by a device that is not theirs). If it \
     is yours, check `confide device list` and unlink what you do not know; if it is someone \
     else's, compare safety numbers with them before you trust what they send";

/// Whether `e` says that this device was unlinked: its store says so (the client deleted its
/// keys on a verified list from another device that drops it). The server's
/// `device_unlinked` alone is not enough ([`server_says_unlinked`]): any server can say it.
pub fn was_unlinked(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<ClientError>())
        .any(|c| match c {
            // The core's own word: it verified the list and deleted the keys (with a mark).
            ClientError::Store(confide_client::store::StoreError::Unlinked) => true,
            _ => false,
        })
}

/// Whether the server refused this device as unlinked (`device_unlinked`): true only once the
/// client verified it ([`keys_gone`]), else the server's word alone.
pub fn server_says_unlinked(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<ClientError>())
        .any(
            |c| matches!(c, ClientError::Server { code, .. } if *code == ErrorCode::DeviceUnlinked),
        )
}

/// What is said when the server refuses this device as unlinked but no verified list says so.
pub const UNLINKED_UNVERIFIED: &str = "the server refuses this device as unlinked, but no list \
     signed by your other devices says so: your keys and messages are kept. If you did not \
     unlink it, the server may be misbehaving; ask its operator";

/// Whether `e` is the connection failing (as an unlinked device's does, closed by the server).
pub fn connection_lost(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|cause| cause.downcast_ref::<ClientError>())
        .any(|c| matches!(c, ClientError::Transport(_)))
}

/// Whether the profile's store no longer holds this device's keys: the client deleted them on
/// learning that another device unlinked this one. Opens the store again (after the command's
/// client has shut down), so only asked when a command's connection failed.
pub async fn keys_gone(profile: &Profile, passphrase: &Secret) -> bool {
    match Client::open(profile.client_config(), passphrase.bytes()).await {
        Ok((client, _)) => {
            client.shutdown().await;
            false
        }
        Err(e) => was_unlinked(&anyhow::Error::from(e)),
    }
}

/// The error every command ends with once this device was unlinked.
pub fn unlinked_error(dir: &Path) -> anyhow::Error {
    anyhow::Error::new(Said {
        text: format!(
            "this device was unlinked from another of your devices: it can no longer read or \
             send, and its keys were deleted. You may delete {} (to use this computer again, \
             link it anew with `confide device link` from your other device)",
            dir.display()
        ),
        exit: EXIT_UNLINKED,
    })
}

/// Whether the typed numbers are the shown ones, ignoring spaces.
fn same_numbers(typed: &str, shown: &str) -> bool {
    let digits = |s: &str| -> String { s.chars().filter(|c| !c.is_whitespace()).collect() };
    let typed = digits(typed);
    !typed.is_empty() && typed == digits(shown)
}

/// Asks (on standard error) for the numbers the other device shows and reads a line of
/// standard input.
fn read_numbers() -> anyhow::Result<String> {
    use std::io::Write as _;
    eprint!("Type the numbers your other device shows: ");
    std::io::stderr().flush()?;
    let mut typed = String::new();
    let read = std::io::stdin()
        .read_line(&mut typed)
        .context("reading the numbers")?;
    if read == 0 {
        bail!("no numbers were typed: nothing was linked");
    }
    Ok(typed)
}

/// The refusal that ends a link whose numbers differ.
fn mismatch() -> anyhow::Error {
    anyhow::Error::new(Said {
        text: MISMATCH.into(),
        exit: EXIT_FAILURE,
    })
}

/// `confide device link`: this computer becomes a new device of the person. Like `confide
/// init`, all or nothing: the profile directory is made only if it may be, and removed again
/// unless the link succeeds.
pub async fn link_new(
    args: &Args,
    out: &Out,
    server: &str,
    pin: Option<&str>,
) -> anyhow::Result<()> {
    let dir = Profile::locate(args.profile.as_deref());
    let pin = pin.map(confide_client::tls::normalize_pin).transpose()?;
    Profile::check_new(&dir)?;
    let passphrase = profile::passphrase(true, &["confide"])?;
    let (profile, created) = Profile::create(&dir, Settings::new(server.to_string(), pin))?;
    let mut config = profile.client_config();
    if std::env::var_os("CONFIDE_INSECURE_FAST_KDF").is_some() {
        // For tests only: a weak key derivation so test suites stay fast.
        config.kdf = confide_protocol::identity::KdfParams::INSECURE_FOR_TESTS;
    }
    match link_new_steps(out, config, &passphrase).await {
        Ok(client) => {
            out.print(
                format!(
                    "Linked. This computer is now one of your devices; your profile is in {}.\n\
                     Your groups arrive as you use them (`confide group list`).",
                    dir.display()
                ),
                json!({ "linked": true, "user": client.user(), "device": client.device() }),
            );
            client.shutdown().await;
            Ok(())
        }
        Err(e) => {
            let left = created.undo();
            Err(if left.is_empty() {
                e
            } else {
                e.context(format!(
                    "not linked; these could not be removed: {}",
                    left.join(", ")
                ))
            })
        }
    }
}

/// The new device's steps once its (empty) profile directory exists: the code, the numbers,
/// and the profile made from what the other device sends. Nothing is written unless the person
/// typed the numbers the other device shows.
async fn link_new_steps(
    out: &Out,
    config: confide_client::ClientConfig,
    passphrase: &Secret,
) -> anyhow::Result<Client> {
    let mut link = Client::link_new_device(config).await?;
    let code = link.code();
    out.print(
        format!(
            "On your other device, choose Link a new device and type this code: {code}\n\
             (with confide there: `confide device add {code}`)"
        ),
        json!({ "code": code, "qr": link.qr_text() }),
    );
    if !out.json {
        eprintln!("Waiting for your other device…");
    }
    let offer = match link.wait_for_offer().await {
        Ok(offer) => offer,
        Err(e) => {
            link.cancel().await;
            return Err(e.into());
        }
    };
    out.print(
        format!(
            "Your other device is {}'s (identity {}).\nThe numbers on this device: {}",
            one_line(&offer.display_name),
            one_line(&offer.fingerprint),
            one_line(&offer.sas)
        ),
        json!({ "sas": offer.sas, "name": offer.display_name, "fingerprint": offer.fingerprint }),
    );
    let typed = match read_numbers() {
        Ok(typed) => typed,
        Err(e) => {
            link.cancel().await;
            return Err(e);
        }
    };
    if !same_numbers(&typed, &offer.sas) {
        link.cancel().await;
        return Err(mismatch());
    }
    // Nothing reads events here: the client discards them rather than holding back.
    let (client, _) = link.finish(passphrase.bytes()).await?;
    Ok(client)
}

/// The device subcommands that need the profile open.
pub async fn run(
    command: &DeviceCommand,
    out: &Out,
    client: &Client,
    passphrase: &Secret,
) -> anyhow::Result<()> {
    match command {
        DeviceCommand::Link { .. } => Ok(()),
        DeviceCommand::Add { code, expect_sas } => {
            add(out, client, code, expect_sas.as_deref()).await
        }
        DeviceCommand::List => list(out, client).await,
        DeviceCommand::Unlink { device } => unlink(out, client, device, passphrase).await,
    }
}

/// `confide device add CODE`: links the device showing CODE, once the person typed (or
/// `--expect-sas` gave) the numbers it shows.
async fn add(
    out: &Out,
    client: &Client,
    code: &str,
    expect_sas: Option<&str>,
) -> anyhow::Result<()> {
    let check = client.link_start(code.trim()).await?;
    out.print(
        format!(
            "Linking a new device ({}).\nThe numbers on this device: {}",
            check.device.short(),
            one_line(&check.sas)
        ),
        json!({ "sas": check.sas, "device": check.device }),
    );
    let typed = match expect_sas {
        Some(expected) => expected.to_string(),
        None => match read_numbers() {
            Ok(typed) => typed,
            Err(e) => {
                let _ = client.link_cancel().await;
                return Err(e);
            }
        },
    };
    if !same_numbers(&typed, &check.sas) {
        client.link_cancel().await?;
        return Err(mismatch());
    }
    if !out.json {
        eprintln!("Waiting for the new device to confirm…");
    }
    let device = client.link_confirm().await?;
    out.print(
        format!(
            "Linked: device {} is now one of yours. It can read what is sent to your groups from now on.",
            device.short()
        ),
        json!({ "linked": true, "device": device }),
    );
    Ok(())
}

/// `confide device list`: this person's devices as this device knows them, after asking the
/// server what is new.
async fn list(out: &Out, client: &Client) -> anyhow::Result<()> {
    let synced = client.synced().await;
    // An unlinked device's list is no longer true: only the refusal is said.
    if let Err(e) = synced {
        if matches!(&e, ClientError::Server { code, .. } if *code == ErrorCode::DeviceUnlinked) {
            return Err(e.into());
        }
        return show_devices(out, client, Err(e)).await;
    }
    show_devices(out, client, Ok(())).await
}

/// Prints the devices, then fails if the sync before could not ask the server what is new.
async fn show_devices(
    out: &Out,
    client: &Client,
    synced: Result<(), ClientError>,
) -> anyhow::Result<()> {
    let own = client.own_devices().await?;
    if out.json {
        println!("{}", serde_json::to_value(&own)?);
    } else {
        println!(
            "Your devices: {} (list version {}, made {}):",
            own.devices.len(),
            own.version,
            crate::commands::local_time(own.at)
        );
        for d in &own.devices {
            let mut notes = Vec::new();
            if d.this_device {
                notes.push("this device");
            }
            if d.made_current_list {
                notes.push("changed the list last");
            }
            let notes = if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join(", "))
            };
            println!("  {}{notes}", d.device);
        }
        println!("Your identity: {}", own.fingerprint);
    }
    synced.map_err(|e| {
        anyhow::Error::from(e).context(
            "this is what this device already had; it may be out of date because the server \
             could not be asked for what is new",
        )
    })
}

/// One of this person's devices by its id or a unique beginning of it.
fn find_device(own: &[DeviceId], text: &str) -> anyhow::Result<DeviceId> {
    let text = text.trim();
    let found: Vec<DeviceId> = own
        .iter()
        .filter(|d| !text.is_empty() && d.to_string().starts_with(text))
        .copied()
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => bail!("none of your devices starts with {text:?} (see `confide device list`)"),
        _ => bail!("several of your devices start with {text:?}: give more of the id"),
    }
}

/// `confide device unlink DEVICE`, after asking for the passphrase again.
async fn unlink(
    out: &Out,
    client: &Client,
    device: &str,
    passphrase: &Secret,
) -> anyhow::Result<()> {
    let own = client.own_devices().await?;
    let ids: Vec<DeviceId> = own.devices.iter().map(|d| d.device).collect();
    let device = find_device(&ids, device)?;
    let this = device == client.device();
    // With $CONFIDE_PASSPHRASE set, that is the answer (scripts); otherwise the person types it
    // again, so that an unlocked terminal is not enough to cut off their other devices.
    if std::env::var_os(profile::PASSPHRASE_ENV).is_none() {
        eprintln!(
            "Unlinking {}: it will read nothing sent afterwards.",
            if this {
                "this device".to_string()
            } else {
                format!("device {device}")
            }
        );
        let again = profile::passphrase(false, &[])?;
        if again.0 != passphrase.0 {
            bail!("that is not your passphrase: nothing was unlinked");
        }
    }
    client.unlink_device(device).await?;
    out.print(
        if this {
            "Unlinked this device: it reads nothing new. Your other devices go on.".to_string()
        } else {
            format!("Unlinked device {device}: it reads nothing sent from now on.")
        },
        json!({ "unlinked": device, "this_device": this }),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_ignoring_spaces_only() {
        assert!(same_numbers("1234 5678 9012\n", "1234 5678 9012"));
        assert!(same_numbers("123456789012", "1234 5678 9012"));
        assert!(!same_numbers("1234 5678 9013", "1234 5678 9012"));
        assert!(!same_numbers("", ""));
        assert!(!same_numbers("\n", "1234"));
    }
}
