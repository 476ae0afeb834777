#!/bin/sh
# Entrypoint of the offline redis image, modelled on the official image's:
# options alone run redis-server, root drops to the redis user, and protected mode is off
# (the official image compiles it off) so other containers can connect without a password.
set -e

# `docker run redis:... --appendonly yes` means `redis-server --appendonly yes`.
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
	set -- redis-server "$@"
fi

if [ "$1" = 'redis-server' ]; then
	case " $* " in
		*" --protected-mode "*) ;;
		*) set -- "$@" --protected-mode no ;;
	esac
	# Started as root: own the data directory, then drop privileges.
	if [ "$(id -u)" = '0' ]; then
		find . \! -user redis -exec chown redis:redis '{}' +
		exec setpriv --reuid=redis --regid=redis --init-groups "$@"
	fi
fi

exec "$@"
