// Package cliout is how the beacon CLI prints: a listing as an aligned
// table, or as JSON in one dialect for every command.
//
// The JSON dialect: field names are the API's (snake_case, every field
// present); integers are JSON numbers, never strings; bytes are text when
// they are valid UTF-8, else base64 with a "<field>_encoding": "base64"
// beside them; timestamps are RFC 3339 strings and durations strings of
// seconds ("1.5s"), as protojson writes them; enums are their names.
package cliout

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// EncodingBase64 is the value of a "<field>_encoding" key: the field's
// bytes are not UTF-8 text and are given in standard base64.
const EncodingBase64 = "base64"

// Bytes is b as a JSON string value: the text itself when b is valid
// UTF-8, else its base64, and the encoding to state beside it ("" for
// text).
func Bytes(b []byte) (value, encoding string) {
	if utf8.Valid(b) {
		return string(b), ""
	}
	return base64.StdEncoding.EncodeToString(b), EncodingBase64
}

// Marshal writes v compactly in the dialect: a proto message by its
// descriptor, anything else with encoding/json (Object keeps key order).
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	if m, ok := v.(proto.Message); ok {
		if err := writeMessage(&b, m.ProtoReflect()); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Slice && rv.Type().Elem().Implements(protoMessage) {
		var b bytes.Buffer
		b.WriteByte('[')
		for i := 0; i < rv.Len(); i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeMessage(&b, rv.Index(i).Interface().(proto.Message).ProtoReflect()); err != nil {
				return nil, err
			}
		}
		b.WriteByte(']')
		return b.Bytes(), nil
	}
	return json.Marshal(v)
}

var protoMessage = reflect.TypeFor[proto.Message]()

// Object is a JSON object whose keys print in the order given.
type Object []Field

// Field is one key of an Object.
type Field struct {
	Key   string
	Value any
}

// With returns o with a key added.
func (o Object) With(key string, value any) Object { return append(o, Field{key, value}) }

// WithBytes returns o with key set to b in the dialect: text, or base64
// and key_encoding.
func (o Object) WithBytes(key string, b []byte) Object {
	v, enc := Bytes(b)
	o = o.With(key, v)
	if enc != "" {
		o = o.With(key+"_encoding", enc)
	}
	return o
}

// MarshalJSON writes the keys in order.
func (o Object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, f := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(f.Key)
		b.Write(k)
		b.WriteByte(':')
		v, err := Marshal(f.Value)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeMessage(b *bytes.Buffer, m protoreflect.Message) error {
	switch m.Descriptor().FullName() {
	case "google.protobuf.Timestamp", "google.protobuf.Duration":
		raw, err := protojson.Marshal(m.Interface())
		b.Write(raw)
		return err
	}
	fields := m.Descriptor().Fields()
	b.WriteByte('{')
	for i, n := 0, 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if o := fd.ContainingOneof(); o != nil && !o.IsSynthetic() && !m.Has(fd) {
			continue // a oneof shows the member it holds
		}
		if n++; n > 1 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, "%q:", fd.Name())
		if fd.HasPresence() && !fd.IsList() && !fd.IsMap() && !m.Has(fd) {
			b.WriteString("null")
			continue
		}
		v := m.Get(fd)
		var err error
		switch {
		case fd.IsList():
			err = writeList(b, fd, v.List())
		case fd.IsMap():
			err = writeMap(b, fd, v.Map())
		default:
			err = writeValue(b, fd, v)
		}
		if err != nil {
			return err
		}
		if fd.Kind() == protoreflect.BytesKind && !fd.IsList() && !fd.IsMap() {
			if _, enc := Bytes(v.Bytes()); enc != "" {
				fmt.Fprintf(b, ",%q:%q", string(fd.Name())+"_encoding", enc)
			}
		}
	}
	b.WriteByte('}')
	return nil
}

func writeList(b *bytes.Buffer, fd protoreflect.FieldDescriptor, l protoreflect.List) error {
	b.WriteByte('[')
	for i := 0; i < l.Len(); i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := writeValue(b, fd, l.Get(i)); err != nil {
			return err
		}
	}
	b.WriteByte(']')
	return nil
}

func writeMap(b *bytes.Buffer, fd protoreflect.FieldDescriptor, m protoreflect.Map) error {
	var keys []protoreflect.MapKey
	m.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
		keys = append(keys, k)
		return true
	})
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(k.String())
		b.Write(name)
		b.WriteByte(':')
		if err := writeValue(b, fd.MapValue(), m.Get(k)); err != nil {
			return err
		}
	}
	b.WriteByte('}')
	return nil
}

// writeValue writes one singular value of fd's kind.
func writeValue(b *bytes.Buffer, fd protoreflect.FieldDescriptor, v protoreflect.Value) error {
	var leaf any
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return writeMessage(b, v.Message())
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			leaf = string(ev.Name())
		} else {
			leaf = int32(v.Enum())
		}
	case protoreflect.BytesKind:
		leaf, _ = Bytes(v.Bytes())
	default: // bool, string and every number kind: numbers stay numbers
		leaf = v.Interface()
	}
	raw, err := json.Marshal(leaf)
	b.Write(raw)
	return err
}
