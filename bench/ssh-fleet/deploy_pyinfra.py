# The benchmark's work for pyinfra, the same as tend's config and playbook.yml.
from pyinfra import host
from pyinfra.operations import files, server
from pyinfra.operations.util import any_changed

base = f"{host.data.bench_work}/hosts/{host.name}/managed"
template = f"{host.data.bench_dir}/templates/small.conf.j2"

files.directory(name="files directory", path=f"{base}/files", mode="755")
files.directory(name="directory tree", path=f"{base}/tree/a/b/c", mode="755")
changed = [
    files.template(
        name=f"file{idx:02d}",
        src=template,
        dest=f"{base}/files/file{idx:02d}.conf",
        mode="644",
        idx=idx,
        hostname=host.name,
        host_id=host.data.host_id,
        role=host.data.role,
        max_conn=host.data.max_conn,
    )
    for idx in range(1, 51)
]
changed.append(
    files.line(name="one line", path=f"{base}/app.conf", line="^max_conn=.*", replace=f"max_conn={host.data.max_conn}")
)
server.shell(
    name="restart when something changed",
    commands=[f"echo restarted $(date +%s%N) >> {base}/restarted.log"],
    _if=any_changed(*changed),
)
