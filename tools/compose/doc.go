// Package compose keeps docker-compose.yml, and the README's tables of the same configuration, honest.
// No Docker engine runs in CI, so the compose file is never started there; instead compose_test.go
// reads it and checks it against the services it runs: their real flags (from the built binaries'
// -h), the flags they refuse to start without, their Dockerfiles, listeners, published ports, the
// hosts their addresses name, and depends_on. readme_test.go checks the README's configuration tables
// (every flag, its variable and its default) against the same binaries, and that the README names
// every field of stack.json.
//
//	go test -count=1 ./tools/compose/
//
// Use -count=1 (make test does): the go command caches test results and rechecks only the files a
// test opens inside its own module, so it would not notice a change to docker-compose.yml, a
// Dockerfile or a service's flags, which all live outside the tools module.
package compose
