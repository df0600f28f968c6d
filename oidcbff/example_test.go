package oidcbff_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/cloakroom/cloakroom"
	"github.com/cloakroom/cloakroom/gateway"
	"github.com/cloakroom/cloakroom/internal/seal"
	"github.com/cloakroom/cloakroom/memstore"
	"github.com/cloakroom/cloakroom/oidcbff"
	"github.com/cloakroom/cloakroom/proxy"
	"github.com/cloakroom/cloakroom/signin"
)

// A provider's users get IDs of their own: the provider's name, a colon,
// and the sub. Local account names cannot contain a colon.
func ExampleUserID() {
	fmt.Println(oidcbff.UserID("corp", "248289761001"))
	// Output: corp:248289761001
}

// Wiring a client into the gateway. New runs discovery, so this example
// is compiled but not run.
func ExampleNew() {
	ctx := context.Background()
	store := memstore.New(memstore.Config{})
	sessions, err := cloakroom.New(cloakroom.Config{Store: store})
	if err != nil {
		log.Fatal(err)
	}
	// Every way in (passwords, providers, the vault) admits through one.
	admission, err := signin.New(signin.Config{Sessions: sessions})
	if err != nil {
		log.Fatal(err)
	}
	keys, err := seal.Load("/etc/cloakroom/oidc.keys")
	if err != nil {
		log.Fatal(err)
	}
	client, err := oidcbff.New(ctx, oidcbff.Config{
		Providers: []oidcbff.ProviderConfig{{
			Name: "corp", DisplayName: "Corp SSO",
			Issuer:   "https://login.example.com/realms/corp",
			ClientID: "cloakroom", ClientSecret: "from a file",
			Scopes:        []string{"openid", "email", "profile"},
			AllowedGroups: []string{"staff"},
		}},
		Admission: admission,
		PublicURL: "https://app.example.com",
		Sealer:    keys,
		StepUp:    []oidcbff.StepUp{{Prefix: "/api/admin/", MaxAge: 10 * time.Minute}},
	})
	if err != nil {
		log.Fatal(err) // names the provider whose discovery failed
	}
	fmt.Println("register", client.CallbackURL("corp"), "and", client.PostLogoutURL())
	// /api/ receives the user's access token instead of the internal JWT.
	api, _ := proxy.ParseRoute("/api/=http://127.0.0.1:9000")
	api.Mode = client.Relay()
	_ = gateway.Config{Sessions: sessions, Admission: admission, OIDC: client} // plus Accounts, Proxy, ...
}
