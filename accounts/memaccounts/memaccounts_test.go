package memaccounts_test

import (
	"testing"

	"github.com/cloakroom/cloakroom/accounts"
	"github.com/cloakroom/cloakroom/accounts/accountstest"
	"github.com/cloakroom/cloakroom/accounts/memaccounts"
)

func TestConformance(t *testing.T) {
	accountstest.Run(t, func(*testing.T) accounts.Store { return memaccounts.New() })
}
