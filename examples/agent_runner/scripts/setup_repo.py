"""Makes the task's local git repository (from repo_template) and a bare "remote"."""
import shutil, subprocess, sys
from pathlib import Path

work = Path(sys.argv[1])
repo, remote = work / "repo", work / "remote.git"
if repo.exists():
    shutil.rmtree(repo)
if remote.exists():
    shutil.rmtree(remote)
shutil.copytree(Path(__file__).parent.parent / "repo_template", repo)
git = lambda *args, cwd=repo: subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)
git("init", "-q", "-b", "main")
git("config", "user.name", "illumo agent")
git("config", "user.email", "agent@example.com")
git("add", "-A")
git("commit", "-q", "-m", "initial import")
subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True, capture_output=True)
git("remote", "add", "origin", str(remote))
git("push", "-q", "origin", "main")
print(repo)
