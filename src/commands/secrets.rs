//! `tend secrets keygen|encrypt|decrypt|edit|rekey|check`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use tend::secrets::{IdentitySources, SecretError, Secrets, sops, tools};

use super::{Failure, load_workspace};
use crate::cli::{Cli, SecretsCommand};

fn secret_failure(e: &SecretError) -> Failure {
    Failure::from_error(e, e.hint())
}

fn io_failure(e: &std::io::Error) -> Failure {
    Failure::from_error(e, None)
}

/// Write a file atomically with a mode.
fn write_private(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Failure> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.tend-{}", path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()), std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs_err::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        fs_err::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs_err::remove_file(&tmp);
        io_failure(&e)
    })
}

type Named = Vec<(String, tools::BoxedRecipient)>;

fn named(list: &[String]) -> Result<Named, Failure> {
    let parsed = tools::parse_recipients(list).map_err(|e| Failure::user(e, None))?;
    Ok(list.iter().cloned().zip(parsed).collect())
}

fn recipients_for(cli: &Cli, given: &[String]) -> Result<Named, Failure> {
    let list = if given.is_empty() {
        let opts = tend::config::LoadOptions { root: cli.config.clone(), environment: cli.environment.clone(), ..Default::default() };
        tend::config::load_recipients(&opts).map_err(|d| Failure::from(tend::workspace::WorkspaceError::Config(d)))?
    } else {
        given.to_vec()
    };
    named(&list)
}

/// Encrypt plaintext the way the original was: SOPS with its rules, or age (armoured or not).
fn seal(plain: &[u8], recipients: Named, sops_info: Option<(sops::Format, sops::Rules)>, armor: bool) -> Result<Vec<u8>, Failure> {
    let sealed = if let Some((format, rules)) = sops_info {
        sops::encrypt(plain, format, &recipients, &rules)
    } else {
        let boxes: Vec<tools::BoxedRecipient> = recipients.into_iter().map(|(_, r)| r).collect();
        tools::encrypt(plain, &boxes, armor)
    };
    sealed.map_err(|e| Failure::user(e, None))
}

fn default_sops_output(file: &Path) -> std::path::PathBuf {
    let name = file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let out = match name.rsplit_once('.') {
        Some((stem, ext)) => format!("{stem}.enc.{ext}"),
        None => format!("{name}.enc"),
    };
    file.with_file_name(out)
}

pub fn run(cli: &Cli, cmd: &SecretsCommand) -> Result<ExitCode, Failure> {
    match cmd {
        SecretsCommand::Keygen { output } => keygen(output.as_deref()),
        SecretsCommand::Encrypt { file, recipients, output, armor, force, sops: as_sops, encrypted_regex, unencrypted_suffix } => {
            let recipients = recipients_for(cli, recipients)?;
            let count = recipients.len();
            let out = output.clone().unwrap_or_else(|| {
                if *as_sops {
                    return default_sops_output(file);
                }
                let mut p = file.clone().into_os_string();
                p.push(".age");
                p.into()
            });
            if out.exists() && !force {
                return Err(Failure::user(format!("{} exists", out.display()), Some("pass --force to replace it".into())));
            }
            let plaintext = zeroize::Zeroizing::new(fs_err::read(file).map_err(|e| io_failure(&e))?);
            let sops_info = as_sops.then(|| {
                let format = sops::Format::from_name(&file.to_string_lossy());
                let rules = sops::Rules { encrypted_regex: encrypted_regex.clone(), unencrypted_suffix: unencrypted_suffix.clone(), ..sops::Rules::default() };
                (format, rules)
            });
            let ct = seal(&plaintext, recipients, sops_info, *armor)?;
            write_private(&out, &ct, 0o644)?;
            eprintln!("Encrypted {} to {count} recipient{}: {}", file.display(), if count == 1 { "" } else { "s" }, out.display());
            eprintln!("The plaintext {} is still there: delete it, or keep it out of Git.", file.display());
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::Decrypt { file } => {
            let secrets = Secrets::new(".".into(), std::collections::BTreeMap::new(), IdentitySources::from_env(&cli.identities));
            let (plaintext, _) = secrets.decrypt_file(file).map_err(|e| secret_failure(&e))?;
            std::io::stdout().write_all(&plaintext).map_err(|e| io_failure(&e))?;
            Ok(ExitCode::SUCCESS)
        }
        SecretsCommand::Edit { file } => edit(cli, file),
        SecretsCommand::Rekey => rekey(cli),
        SecretsCommand::Check => check(cli),
    }
}

fn keygen(output: Option<&Path>) -> Result<ExitCode, Failure> {
    let (text, recipient) = tools::keygen(&tend::state::now_rfc3339());
    match output {
        Some(path) => {
            if path.exists() {
                return Err(Failure::user(format!("{} exists; tend will not overwrite an identity", path.display()), None));
            }
            // A directory that is not there yet is made, private to its owner, as ssh-keygen
            // does for ~/.ssh.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| Failure::from_error(&e, None))?;
                eprintln!("Made {} (mode 0700).", dir.display());
            }
            write_private(path, text.as_bytes(), 0o600)?;
            eprintln!("Wrote the identity to {} (mode 0600). Keep it out of Git.", path.display());
        }
        None => print!("{}", &*text),
    }
    eprintln!("Public key: {recipient}");
    Ok(ExitCode::SUCCESS)
}

fn edit(cli: &Cli, file: &Path) -> Result<ExitCode, Failure> {
    let ws = load_workspace(cli)?;
    let recipients = named(&ws.config.recipients)?;
    let before = fs_err::read(file).map_err(|e| io_failure(&e))?;
    let (plaintext, sops_info) = ws.secrets.decrypt_file(file).map_err(|e| secret_failure(&e))?;
    // A private directory (0700), in memory when /dev/shm is there; removed on every path.
    let base = if Path::new("/dev/shm").is_dir() { std::path::PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let dir = tempfile::Builder::new().prefix("tend-edit-").tempdir_in(base).map_err(|e| io_failure(&e))?;
    let name = file.file_name().map_or_else(|| "secret".into(), |n| n.to_string_lossy().trim_end_matches(".age").replace(".enc.", "."));
    let tmp = dir.path().join(name);
    write_private(&tmp, &plaintext, 0o600)?;
    let editor = std::env::var("VISUAL").or_else(|_| std::env::var("EDITOR")).unwrap_or_else(|_| "vi".into());
    let status = std::process::Command::new("sh").arg("-c").arg(format!("{editor} \"$1\"")).arg("sh").arg(&tmp).status();
    let edited = zeroize::Zeroizing::new(fs_err::read(&tmp).unwrap_or_default());
    let _ = fs_err::write(&tmp, vec![0u8; edited.len()]);
    drop(dir);
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => return Err(Failure::user(format!("the editor `{editor}` exited with {s}; {} is unchanged", file.display()), None)),
        Err(e) => return Err(Failure::from_error(&e, Some(format!("set $EDITOR; tried `{editor}`")))),
    }
    if *edited == *plaintext {
        eprintln!("No changes; {} is untouched.", file.display());
        return Ok(ExitCode::SUCCESS);
    }
    let count = recipients.len();
    let ct = seal(&edited, recipients, sops_info, tools::is_armored(&before))?;
    write_private(file, &ct, 0o644)?;
    eprintln!("Re-encrypted {} to {count} recipient{}.", file.display(), if count == 1 { "" } else { "s" });
    Ok(ExitCode::SUCCESS)
}

fn rekey(cli: &Cli) -> Result<ExitCode, Failure> {
    let ws = load_workspace(cli)?;
    named(&ws.config.recipients)?;
    let decls = ws.secrets.declarations();
    if decls.is_empty() {
        eprintln!("No secrets are declared.");
        return Ok(ExitCode::SUCCESS);
    }
    // Decrypt everything first: rekey changes nothing unless every secret can be read.
    let mut plain = Vec::new();
    for decl in decls.values() {
        let path = ws.config.root.join(&decl.file);
        let (text, sops_info) = ws.secrets.decrypt_file(&path).map_err(|e| secret_failure(&e))?;
        let armored = tools::is_armored(&fs_err::read(&path).map_err(|e| io_failure(&e))?);
        plain.push((decl, path, text, sops_info, armored));
    }
    for (decl, path, text, sops_info, armored) in plain {
        let recipients = named(&ws.config.recipients)?;
        let count = recipients.len();
        let ct = seal(&text, recipients, sops_info, armored)?;
        write_private(&path, &ct, 0o644)?;
        println!("rekeyed secret `{}` ({}) to {count} recipient{}", decl.name, decl.file, if count == 1 { "" } else { "s" });
    }
    Ok(ExitCode::SUCCESS)
}

fn check(cli: &Cli) -> Result<ExitCode, Failure> {
    let ws = load_workspace(cli)?;
    let mut problems = Vec::new();
    for name in ws.secrets.declarations().keys() {
        match ws.secrets.get(name, &[]) {
            Ok(_) => println!("ok      secret `{name}`"),
            Err(e) => problems.push(e),
        }
    }
    for res in ws.config.resources.values() {
        for field in res.fields.values() {
            for r in field.expr.secret_refs() {
                if let Err(e) = ws.secrets.get(&r.name, &r.path)
                    && !problems.iter().any(|p| p.to_string() == e.to_string())
                {
                    problems.push(e);
                }
            }
        }
    }
    if problems.is_empty() {
        println!("Every secret decrypts and every referenced key exists.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::new();
    for p in &problems {
        text.push_str(&Failure::from_error(p, p.hint()).text);
    }
    text.push_str(&format!("error: {} secret problem{}\n", problems.len(), if problems.len() == 1 { "" } else { "s" }));
    Err(Failure { text })
}
