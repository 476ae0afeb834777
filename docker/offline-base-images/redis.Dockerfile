# Stand-in for the official redis:<major>-bookworm image, built by
# scripts/offline-base-images from Debian's redis-server package. Behaves like the official
# image where compose relies on it: `redis-server [options]` as the command, data in the
# /data volume, listening on all interfaces with protected mode off, redis-cli present.
FROM debian:bookworm-slim
# policy-rc.d stops the package's maintainer scripts from trying to start a service.
RUN printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends redis-server redis-tools \
 && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d \
 && mkdir /data && chown redis:redis /data
COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
VOLUME /data
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
