#!/bin/sh
# The image's entrypoint: it starts as root only to choose who runs the
# command, then runs it as that user (never changing any file's owner).
#
#   taskserver ...   as the owner of the data file ($TASKSERVER_DATA,
#                    /app/tasks.json): whoever owns ./tasks.json on the host,
#                    so that the server can write it in place. If there is no
#                    file yet, as the owner of the directory it goes in; if
#                    that directory is anyone's (mode 1777, like the image's
#                    own /app), as the image's user app (uid 1000).
#   anything else    as app (uid 1000): the clients, a shell.
#
# The server runs as root only when the data file is root's (a clone made as
# root, a CI machine), since only root may write it then. Started as another
# user already (`docker run --user`, `user:` in compose, rootless setups), it
# changes nothing and runs the command as that user.
set -eu

if [ "$(id -u)" != 0 ]; then
    exec "$@"
fi

app_user=1000:1000
who=$app_user
if [ "${1:-}" = taskserver ]; then
    data=${TASKSERVER_DATA:-/app/tasks.json}
    dir=$(dirname -- "$data")
    if [ -e "$data" ]; then
        who=$(stat -c %u:%g -- "$data")
        why="the owner of $data"
    elif [ -d "$dir" ] && [ "$(stat -c %a -- "$dir")" != 1777 ]; then
        who=$(stat -c %u:%g -- "$dir")
        why="the owner of $dir, where $data will be created"
    else
        why="the image's user app: $data does not exist yet"
    fi
    echo "entrypoint: running taskserver as uid:gid $who ($why)" >&2
fi

if [ "$who" = 0:0 ]; then
    exec "$@"
fi
exec setpriv --reuid="${who%:*}" --regid="${who#*:}" --clear-groups -- "$@"
