# The deployment image: the static det-agent binary and nothing else. No shell, no libc, no
# CA bundle, no /etc/passwd: the binary bundles Mozilla's roots for CA mode, and reads
# agent.yaml and any pinned certificate from the volumes you mount.
#
# Build the binary first, with the README's deployment command ("Building for deployment"),
# then the image from the repository's root:
#
#   cargo build --locked --profile dist --target x86_64-unknown-linux-musl
#   docker build -t det-agent .
#
# The build context is that one file (.dockerignore): with another CARGO_TARGET_DIR, copy
# the binary to target/x86_64-unknown-linux-musl/dist/det-agent first.
#
# Run it with the node's configuration mounted read-only, and its state folder (the master's
# identity for `det-agent task-env`: /var/lib/det-agent/master.json) writable by the image's
# user, on the host's network (the agent dials out only):
#
#   mkdir -p /var/lib/det-agent && chown 65532:65532 /var/lib/det-agent
#   docker run -d --name det-agent --restart unless-stopped --network host \
#     -v /etc/determined:/etc/determined:ro -v /var/lib/det-agent:/var/lib/det-agent \
#     det-agent run
#
# COPY --chmod needs BuildKit (the default builder since Docker 23).
#
# CI cannot run Docker; .ci/chroot-demo runs `det-agent demo` with this binary in an empty
# root as this image's user, which stands in for `docker run det-agent demo`.
FROM scratch
COPY --chmod=0555 target/x86_64-unknown-linux-musl/dist/det-agent /det-agent
# Numeric, so no /etc/passwd is needed; the agent needs no privileges (65532: "nonroot",
# as in the distroless images). Mounted files must be readable by this user.
USER 65532:65532
ENTRYPOINT ["/det-agent"]
CMD ["run"]
