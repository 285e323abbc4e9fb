// Command keygen writes a new Ed25519 key pair for signing Herald tokens: the private key for auth
// and the public key for the push-servers, both PEM.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/heraldpush/herald/pkg/token"
)

func main() {
	priv := flag.String("private", "jwt-ed25519.pem", "file for the private key (auth)")
	pub := flag.String("public", "jwt-ed25519.pub.pem", "file for the public key (push-servers)")
	flag.Parse()
	kid, err := token.WriteKeyFiles(*priv, *pub)
	if err != nil {
		fmt.Fprintln(os.Stderr, "keygen:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s and %s (kid %s)\n", *priv, *pub, kid)
}
