package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/heraldpush/herald/pkg/account"
	"github.com/heraldpush/herald/pkg/apikey"
	"github.com/heraldpush/herald/pkg/mysqldb"
	"github.com/heraldpush/herald/pkg/token"
)

// credentials are the development secrets the stack makes and hands to its services and its user.
type credentials struct {
	privateKeyFile, publicKeyFile string
	apiKey                        string
	adminUser, adminPassword      string
	demoUID, demoPassword         string
	internalSecret                string
}

// seed prepares the signing keys (kept across runs, so tokens stay valid), applies the schema and
// creates the dev API key and demo account.
func seed(ctx context.Context, dsn, dir string) (credentials, error) {
	c := credentials{
		privateKeyFile: filepath.Join(dir, "keys", "jwt-ed25519.pem"),
		publicKeyFile:  filepath.Join(dir, "keys", "jwt-ed25519.pub.pem"),
		adminUser:      "admin",
		adminPassword:  rand.Text()[:16],
		demoUID:        "demo",
		demoPassword:   "demo-password",
		internalSecret: rand.Text(),
	}
	if err := ensureKeys(c.privateKeyFile, c.publicKeyFile); err != nil {
		return c, err
	}
	db, err := mysqldb.Open(ctx, dsn)
	if err != nil {
		return c, err
	}
	defer db.Close()
	if err := mysqldb.Migrate(ctx, db, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		return c, err
	}
	if c.apiKey, _, err = apikey.NewStore(db).Create(ctx, "local stack"); err != nil {
		return c, err
	}
	accounts, err := account.NewStore(db, 0)
	if err != nil {
		return c, err
	}
	if err := accounts.Create(ctx, c.demoUID, c.demoPassword); err != nil {
		return c, fmt.Errorf("demo account: %w", err)
	}
	return c, nil
}

func ensureKeys(privFile, pubFile string) error {
	_, errPriv := os.Stat(privFile)
	_, errPub := os.Stat(pubFile)
	if errPriv == nil && errPub == nil {
		return nil
	}
	// Half a pair is useless: start over.
	os.Remove(privFile)
	os.Remove(pubFile)
	if err := os.MkdirAll(filepath.Dir(privFile), 0o700); err != nil {
		return err
	}
	_, err := token.WriteKeyFiles(privFile, pubFile)
	return err
}
