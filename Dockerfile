# udpgrm-proxy on Debian 12, running the shipped config/proxy.yaml (HTTP/3 + HTTP/2 + HTTP/1.1 on
# 127.0.0.1:4433 and [::1]:4433, admin endpoint on 127.0.0.1:9901).
#
# The master loads a BPF program and pins its maps, so the container needs:
#   CAP_BPF        load the program, create and use the maps
#   CAP_NET_ADMIN  attach it to the listeners' SO_REUSEPORT groups
#   CAP_SYS_ADMIN  pin in bpffs (and mount bpffs if it is not there)
#   (some kernels also want CAP_PERFMON for the verifier; --privileged covers everything)
# and bpffs at /sys/fs/bpf (a container's /sys is read-only: bind the host's):
#   docker build -t udpgrm-proxy .
#   docker run --rm --network host --cap-add BPF --cap-add NET_ADMIN --cap-add SYS_ADMIN --cap-add PERFMON \
#     --ulimit memlock=-1 -v /sys/fs/bpf:/sys/fs/bpf udpgrm-proxy
#   curl http://127.0.0.1:9901/metrics
# or: docker run --rm --network host --privileged udpgrm-proxy
# --network host because the shipped config listens on loopback; with your own config (mount it
# and pass --config) a bridge network with -p 443:443/udp -p 443:443/tcp works as well.
FROM debian:12
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/udpgrm-proxy
COPY . .
# The same script a developer runs: Debian packages, Node.js 20, npm install (package-lock.json), build.
RUN bash scripts/setup.sh && rm -rf /var/lib/apt/lists/*
EXPOSE 4433/udp 4433/tcp 9901/tcp
ENTRYPOINT ["bash", "scripts/docker-entrypoint.sh"]
CMD ["--config", "config/proxy.yaml"]
