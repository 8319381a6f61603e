//! What a command may be and what it starts with: the program allow-list (resolved to
//! canonical paths once, when the service starts, and every request's program resolved the
//! same way before it runs) and the environment a command gets.
//!
//! Nothing here runs a program; the server spawns the path this module resolved, so no
//! `PATH` lookup happens between the check and the spawn.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The `PATH` a command gets when the environment is cleared, and where program names are
/// looked up: the usual system directories, nothing writable by ordinary users.
pub const CLEAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Variables carried over from the server's environment into a cleared one: who and where
/// the command runs as, and how text is encoded. Everything else (tokens, proxies, the
/// daemon's own settings) stays behind.
const KEPT_VARS: [&str; 5] = ["HOME", "USER", "LOGNAME", "LANG", "TZ"];

/// The environment commands run with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExecEnv {
    /// Cleared: `PATH` is [`CLEAN_PATH`], `HOME`, `USER`, `LOGNAME`, `LANG` and `TZ` are
    /// kept from the server's environment, nothing else is passed. The default.
    #[default]
    Cleared,
    /// Everything the server process has, `PATH` included.
    Inherit,
}

impl ExecEnv {
    /// The variables a command starts with, or `None` to inherit the server's.
    pub(super) fn vars(&self) -> Option<Vec<(OsString, OsString)>> {
        match self {
            ExecEnv::Inherit => None,
            ExecEnv::Cleared => {
                let mut vars = vec![(OsString::from("PATH"), OsString::from(CLEAN_PATH))];
                for name in KEPT_VARS {
                    if let Some(value) = std::env::var_os(name) {
                        vars.push((name.into(), value));
                    }
                }
                Some(vars)
            }
        }
    }

    /// The `PATH` program names are looked up in.
    fn search_path(&self) -> OsString {
        match self {
            ExecEnv::Cleared => CLEAN_PATH.into(),
            ExecEnv::Inherit => std::env::var_os("PATH").unwrap_or_else(|| CLEAN_PATH.into()),
        }
    }
}

/// The programs a service allows, as canonical paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProgramList {
    allowed: BTreeSet<PathBuf>,
}

/// Why a program was not resolved or is not allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// No such program (on the search path, or at the path given).
    NotFound(String),
    /// It exists, and it is not on the list.
    NotAllowed(String),
}

impl ProgramList {
    /// Resolves every entry (a path, or a name looked up in `env`'s search path) to its
    /// canonical path; an entry that resolves to nothing is an error naming it.
    pub(super) fn resolve(entries: &[String], env: &ExecEnv) -> Result<Self, String> {
        let path = env.search_path();
        let mut allowed = BTreeSet::new();
        for entry in entries {
            let found = locate(entry, &path)
                .ok_or_else(|| format!("allowed program {entry:?} was not found"))?;
            allowed.insert(found);
        }
        Ok(Self { allowed })
    }

    /// The canonical path of `program` if the list allows it.
    pub(super) fn check(&self, program: &str, env: &ExecEnv) -> Result<PathBuf, Refusal> {
        let found =
            locate(program, &env.search_path()).ok_or(Refusal::NotFound(program.to_owned()))?;
        if self.allowed.contains(&found) {
            Ok(found)
        } else {
            Err(Refusal::NotAllowed(format!(
                "{program:?} ({}) is not on this node's program allow-list",
                found.display()
            )))
        }
    }
}

/// `program`'s canonical path: as given when it contains a `/`, else the first executable
/// file of that name on `search_path`. Symlinks are resolved, so a link to an allowed
/// program is that program, and a link elsewhere is not.
fn locate(program: &str, search_path: &std::ffi::OsStr) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    if program.contains('/') {
        return executable(Path::new(program));
    }
    std::env::split_paths(search_path).find_map(|dir| executable(&dir.join(program)))
}

fn executable(path: &Path) -> Option<PathBuf> {
    let canonical = path.canonicalize().ok()?;
    let meta = canonical.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o111 == 0 {
            return None;
        }
    }
    Some(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_links_resolve_to_the_same_program() {
        let env = ExecEnv::Cleared;
        let list = ProgramList::resolve(&["true".into()], &env).unwrap();
        let by_name = list.check("true", &env).unwrap();
        assert_eq!(
            list.check(by_name.to_str().unwrap(), &env),
            Ok(by_name.clone())
        );
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("innocent");
        std::os::unix::fs::symlink(&by_name, &link).unwrap();
        assert_eq!(list.check(link.to_str().unwrap(), &env), Ok(by_name));
    }

    #[test]
    fn other_programs_shells_and_missing_ones_are_refused() {
        let env = ExecEnv::Cleared;
        let list = ProgramList::resolve(&["true".into()], &env).unwrap();
        assert!(matches!(
            list.check("sh", &env),
            Err(Refusal::NotAllowed(_))
        ));
        assert!(matches!(
            list.check("false", &env),
            Err(Refusal::NotAllowed(_))
        ));
        assert!(matches!(
            list.check("no-such-program-here", &env),
            Err(Refusal::NotFound(_))
        ));
        // A copy of an allowed program elsewhere is a different program.
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("true");
        std::fs::copy(list.check("true", &env).unwrap(), &copy).unwrap();
        assert!(matches!(
            list.check(copy.to_str().unwrap(), &env),
            Err(Refusal::NotAllowed(_))
        ));
        assert!(ProgramList::resolve(&["no-such-program-here".into()], &env).is_err());
    }

    #[test]
    fn a_cleared_environment_keeps_only_the_basics() {
        let vars = ExecEnv::Cleared.vars().unwrap();
        assert_eq!(vars[0], ("PATH".into(), CLEAN_PATH.into()));
        assert!(vars
            .iter()
            .all(|(k, _)| k == "PATH" || KEPT_VARS.iter().any(|kept| k == kept)));
        assert_eq!(ExecEnv::Inherit.vars(), None);
    }
}
