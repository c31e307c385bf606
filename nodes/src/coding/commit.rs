//! Writing a patch's files to disk: all of them or none. Every new content is first
//! written beside its file (staged); only when all are staged are they renamed over their
//! files, one by one; if one rename fails, the files already replaced get their previous
//! content back and the folders made for new files are removed again.

use std::path::{Path, PathBuf};

/// What one file becomes: new content, or removed (`None`).
pub(crate) struct FileChange {
    pub path: String,
    pub target: PathBuf,
    pub content: Option<String>,
}

/// A file's state before the commit, to restore it.
enum Before {
    Missing,
    Content(Vec<u8>),
}

/// Writes every change, or none; the error names the file that failed.
pub(crate) fn commit(changes: &[FileChange]) -> Result<(), String> {
    let mut made_dirs = Vec::new();
    let mut staged: Vec<Option<PathBuf>> = Vec::with_capacity(changes.len());
    for change in changes {
        match stage(change, &mut made_dirs) {
            Ok(temp) => staged.push(temp),
            Err(e) => {
                discard(&staged, &made_dirs);
                return Err(format!(
                    "cannot write `{}`: {e}; no file was changed",
                    change.path
                ));
            }
        }
    }
    let before: Vec<Before> = changes
        .iter()
        .map(|c| match std::fs::read(&c.target) {
            Ok(bytes) => Before::Content(bytes),
            Err(_) => Before::Missing,
        })
        .collect();
    for (i, (change, temp)) in changes.iter().zip(&staged).enumerate() {
        let result = match temp {
            Some(temp) => std::fs::rename(temp, &change.target),
            None => std::fs::remove_file(&change.target),
        };
        if let Err(e) = result {
            let restored = restore(&changes[..i], &before[..i]);
            discard(&staged[i..], &made_dirs);
            let outcome = match restored {
                Ok(()) => "the files already written were restored".to_string(),
                Err(failed) => format!("restoring failed too: {failed}"),
            };
            return Err(format!("cannot write `{}`: {e}; {outcome}", change.path));
        }
    }
    Ok(())
}

/// Writes a change's new content beside its file; `None` for a removal.
fn stage(change: &FileChange, made_dirs: &mut Vec<PathBuf>) -> std::io::Result<Option<PathBuf>> {
    let Some(content) = &change.content else {
        return Ok(None);
    };
    if let Some(parent) = change.target.parent() {
        make_dirs(parent, made_dirs)?;
    }
    let temp = temp_path(&change.target);
    std::fs::write(&temp, content)?;
    Ok(Some(temp))
}

/// Creates `dir` and its missing parents, remembering which were new.
fn make_dirs(dir: &Path, made: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    for d in missing.into_iter().rev() {
        std::fs::create_dir(&d)?;
        made.push(d);
    }
    Ok(())
}

fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}.illumo-tmp-{}", std::process::id()))
}

/// Removes staged files and the folders made for them (newest first, only if empty).
fn discard(staged: &[Option<PathBuf>], made_dirs: &[PathBuf]) {
    for temp in staged.iter().flatten() {
        let _ = std::fs::remove_file(temp);
    }
    for dir in made_dirs.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// Puts back what the first files held before the commit.
fn restore(changes: &[FileChange], before: &[Before]) -> Result<(), String> {
    let mut failed = Vec::new();
    for (change, before) in changes.iter().zip(before) {
        let result = match before {
            Before::Missing => std::fs::remove_file(&change.target),
            Before::Content(bytes) => {
                let temp = temp_path(&change.target);
                std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, &change.target))
            }
        };
        if let Err(e) = result {
            failed.push(format!("`{}`: {e}", change.path));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_file_leaves_every_file_as_it_was() {
        let tree = super::super::TempTree::new("commit-test").unwrap();
        let root = &tree.0;
        std::fs::write(root.join("a.txt"), "old a\n").unwrap();
        std::fs::create_dir_all(root.join("b.txt/inside")).unwrap();
        let changes = [
            FileChange {
                path: "a.txt".into(),
                target: root.join("a.txt"),
                content: Some("new a\n".into()),
            },
            FileChange {
                path: "new/dir/c.txt".into(),
                target: root.join("new/dir/c.txt"),
                content: Some("c\n".into()),
            },
            // A folder where the file should go: the rename fails.
            FileChange {
                path: "b.txt".into(),
                target: root.join("b.txt"),
                content: Some("b\n".into()),
            },
        ];
        let e = commit(&changes).unwrap_err();
        assert!(
            e.starts_with("cannot write `b.txt`: ")
                && e.ends_with("; the files already written were restored"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("a.txt")).unwrap(),
            "old a\n"
        );
        assert!(
            !root.join("new").exists(),
            "the folders made for c.txt are gone"
        );
        let mut left: Vec<String> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        left.sort();
        assert_eq!(left, ["a.txt", "b.txt"], "no staged file is left behind");
    }
}
