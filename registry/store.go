package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// fileStore keeps the agent-owned registrations in the data dir, so that
// they come back after an agent restart.
type fileStore struct {
	dir string
	mu  sync.Mutex // serialises snapshot+write, so an older list never lands last
}

const storeName = "services.json"

func (s *fileStore) load() ([]Registration, error) {
	path := filepath.Join(s.dir, storeName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var regs []Registration
	if err := json.Unmarshal(b, &regs); err != nil {
		return nil, fmt.Errorf("%s is damaged (%v); move it aside to start without the kept registrations", path, err)
	}
	return regs, nil
}

// save writes atomically: a crash mid-write leaves the previous file.
func (s *fileStore) save(regs []Registration) error {
	sort.Slice(regs, func(i, j int) bool {
		return regs[i].Instance.Service+"/"+regs[i].Instance.ID < regs[j].Instance.Service+"/"+regs[j].Instance.ID
	})
	b, err := json.MarshalIndent(regs, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(s.dir, storeName+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, storeName)); err != nil {
		return err
	}
	// The rename is durable once the directory is: else a power cut can
	// bring back the file before it.
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
