package oidcbff_test

import (
	"testing"

	"github.com/cloakroom/cloakroom/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }
