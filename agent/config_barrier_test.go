package agent

import (
	"errors"
	"testing"
)

// TestBarrierParticipantsKey: max-barrier-participants defaults to the
// barrier package's bound, is taken from a flag, the environment and the
// config file, and a bad value is refused naming the key.
func TestBarrierParticipantsKey(t *testing.T) {
	d, err := load(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if d.MaxBarrierParticipants != 1024 {
		t.Fatalf("default max-barrier-participants %d, want 1024", d.MaxBarrierParticipants)
	}
	c, err := load(t, writeFile(t, "max-barrier-participants: 16\n"))
	if err != nil || c.MaxBarrierParticipants != 16 {
		t.Fatalf("file: %d, %v (want 16)", c.MaxBarrierParticipants, err)
	}
	t.Setenv("BEACON_MAX_BARRIER_PARTICIPANTS", "32")
	if c, err = load(t, ""); err != nil || c.MaxBarrierParticipants != 32 {
		t.Fatalf("env: %d, %v (want 32)", c.MaxBarrierParticipants, err)
	}
	if c, err = load(t, "", "--max-barrier-participants", "8"); err != nil || c.MaxBarrierParticipants != 8 {
		t.Fatalf("flag: %d, %v (want 8)", c.MaxBarrierParticipants, err)
	}
	for _, bad := range []string{"0", "-3", "70000"} {
		_, err := load(t, "", "--max-barrier-participants", bad)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != "max-barrier-participants" {
			t.Fatalf("max-barrier-participants %s: %v, want a ConfigError naming the key", bad, err)
		}
	}
}
