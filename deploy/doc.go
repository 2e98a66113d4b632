// Package deploy checks the deployment files against the code they deploy. It has no code
// outside its tests, which parse docker-compose.yml (including its commented-out worker-cuda
// variant), docker/Dockerfile.*, docker/*.env.example and .dockerignore without a Docker engine,
// and hold them to the binaries' real flag sets, registered the way each cmd/ main registers them:
//
//   - each service builds from a Dockerfile that exists, whose final stage runs the right binary
//     (exec-form ENTRYPOINT) as a non-root USER;
//   - each --flag in a command, each SPARECYCLES_* variable (compose environment, image ENV, env
//     file examples, comments) is a flag of that binary, and the values parse;
//   - state (--data, --key-file) sits on a writable volume, inputs (--models) on a volume, and no
//     volume is mounted where no path flag points;
//   - a served port listens on all interfaces and is the port published and health-checked;
//     every long-running service has a healthcheck whose program is in its image;
//   - a relay URL naming another service uses that service's port and waits for it to be healthy;
//   - no secret is written in the compose file or passed as a flag value (ps shows those);
//   - .dockerignore keeps secrets, state and models out of the build context, and the sources in.
package deploy
