package sqlite_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/sqlite"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "scanfleet-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	// The directory is created, the schema migrated.
	store, err := sqlite.Open(ctx, sqlite.Config{Path: filepath.Join(dir, "data", "scanfleet.db")})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	if err := store.CreateWorkspace(ctx, &scanfleet.Workspace{Name: "acme"}); err != nil {
		log.Fatal(err)
	}
	svc, err := scanfleet.NewRecord(map[string]any{"kind": "service", "ip": "10.0.0.5", "port": 22, "name": "ssh"})
	if err != nil {
		log.Fatal(err)
	}
	for range 2 {
		res, err := store.UpsertRecords(ctx, "acme", "", []scanfleet.Record{svc}, time.Now())
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: new %d, unchanged %d\n", svc.Key, res.New, res.Unchanged)
	}

	err = store.CreateWorkspace(ctx, &scanfleet.Workspace{Name: "acme"})
	fmt.Println(scanfleet.ErrorCode(err)+":", scanfleet.ErrorMessage(err))
	// Output:
	// 10.0.0.5:22/tcp: new 1, unchanged 0
	// 10.0.0.5:22/tcp: new 0, unchanged 1
	// conflict: workspace "acme" already exists
}
