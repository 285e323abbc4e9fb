package token_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/heraldpush/herald/pkg/token"
)

func Example() {
	pub, priv, err := token.GenerateKey()
	if err != nil {
		panic(err)
	}

	// auth: sign at login.
	tok, _, err := token.NewSigner(priv, time.Hour).Sign("alice", "phone")
	if err != nil {
		panic(err)
	}

	// push-server: verify before the WebSocket upgrade.
	v := token.NewVerifier(pub)
	c, err := v.Verify(tok)
	fmt.Println(c.UID, c.Device, err)

	v.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	_, err = v.Verify(tok)
	fmt.Println(errors.Is(err, token.ErrExpired))
	// Output:
	// alice phone <nil>
	// true
}
