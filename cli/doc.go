// Package cli is the scanfleet command line: the server, and client
// commands that talk to a server's API. cmd/scanfleet is a thin wrapper
// around Run, so that tests can start the whole program in-process.
//
// Every flag can also be set with an environment variable named
// SCANFLEET_ and the flag's name in upper case with '_' for '-':
// --data-dir is SCANFLEET_DATA_DIR, --server is SCANFLEET_SERVER. A flag
// given on the command line wins over the variable.
package cli
