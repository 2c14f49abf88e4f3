package records_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/cairnlabs/cairn/records"
)

func ExampleCollector() {
	seed := sha256.Sum256([]byte("example contributor"))
	key := ed25519.NewKeyFromSeed(seed[:])
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	c, _ := records.NewCollector(records.DefaultRules())

	text := "The tide comes in twice a day along this coast, and the fishermen time their boats by it."
	r := records.Sign(key, []byte(text), now.Add(-time.Hour).Unix(), "CC-BY-4.0", true)
	d, err := c.Check(&r, now)
	fmt.Println(d.Reward, err)
	c.Add(&r) // once stored durably

	copyOf := records.Sign(key, []byte(text), now.Unix(), "CC0-1.0", true)
	_, err = c.Check(&copyOf, now)
	fmt.Println(err)

	unlicensed := records.Sign(key, []byte("An entirely different text of a good many words about the hills."), now.Unix(), "proprietary", true)
	_, err = c.Check(&unlicensed, now)
	fmt.Println(err)
	// Output:
	// 999 <nil>
	// records: duplicate: the same content as record 0
	// records: unlicensed: licence "proprietary" is not one this collector takes ([CC0-1.0 CC-BY-4.0 CC-BY-SA-4.0 ODC-BY-1.0 MIT Apache-2.0])
}
