package faults

import (
	"os"
	"testing"

	"github.com/beaconhq/beacon/internal/testcluster"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testcluster.Cleanup()
	os.Exit(code)
}
