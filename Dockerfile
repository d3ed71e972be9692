# udpgrm-proxy on Debian 12. BPF needs privileges: docker run --privileged --network host IMAGE
FROM debian:12
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/udpgrm-proxy
COPY . .
RUN bash scripts/setup.sh && rm -rf /var/lib/apt/lists/*
EXPOSE 4433/udp
ENTRYPOINT ["./bin/udpgrm-proxy"]
CMD ["--config", "config/proxy.yaml"]
