package importer

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The XML format:
//
//	<events>
//	  <event type="track">
//	    <userId>u1</userId>
//	    <anonymousId>..</anonymousId> <previousId>..</previousId> <groupId>..</groupId>
//	    <messageId>..</messageId> <channel>pos</channel>
//	    <event>Order Completed</event>          (track)
//	    <name>Home</name>                       (page, screen)
//	    <timestamp>2024-01-02T10:00:00Z</timestamp> <sentAt>..</sentAt> <originalTimestamp>..</originalTimestamp>
//	    <properties><revenue>10.5</revenue><sku>007</sku></properties>
//	    <traits><email>a@b.c</email></traits>
//	    <context>
//	      <externalIds><externalId type="loyalty_id">L1</externalId></externalIds>
//	      <device><type>pos</type></device>
//	    </context>
//	  </event>
//	  ...
//	</events>
//
// The type attribute is required (a Segment call type). The elements above
// are the only children <event> may have, each at most once; the simple
// ones hold text only. Inside <properties>, <traits> and <context> any
// element nests: an element with children becomes an object, a repeated
// name an array, a leaf its trimmed text. Only in properties (at any depth)
// does a leaf that is a JSON number ("10.5", "-3", "1e3"; not "007") become
// a number; traits and context values stay strings. Attributes other than
// type are ignored. A malformed <event> (unknown or repeated child, missing
// type, text element with children, <externalId> without type) is a
// malformed row; XML syntax errors are fatal.

var xmlTextFields = map[string]bool{
	"userId": true, "anonymousId": true, "previousId": true, "groupId": true, "messageId": true, "channel": true,
	"event": true, "name": true, "timestamp": true, "sentAt": true, "originalTimestamp": true,
}

var xmlKinds = map[string]bool{"track": true, "identify": true, "page": true, "screen": true, "group": true, "alias": true}

// xmlNode is an element read into memory (one <event> at most).
type xmlNode struct {
	name     string
	attrs    []xml.Attr
	text     strings.Builder
	children []*xmlNode
}

type xmlSource struct {
	dec    *xml.Decoder
	budget *budgetReader
	done   bool
}

func newXML(r io.Reader) (func() (Row, error), error) {
	s := &xmlSource{budget: &budgetReader{r: r}}
	s.budget.allow(0)
	s.dec = xml.NewDecoder(s.budget)
	for {
		tok, err := s.dec.Token()
		if err != nil {
			return nil, fmt.Errorf("importer: xml: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "events" {
				return nil, fmt.Errorf("importer: xml: root element <%s>, want <events>", se.Name.Local)
			}
			return s.next, nil
		}
	}
}

func (s *xmlSource) next() (Row, error) {
	for !s.done {
		s.budget.allow(s.dec.InputOffset())
		tok, err := s.dec.Token()
		if err != nil {
			return Row{}, fmt.Errorf("importer: xml: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			line, _ := s.dec.InputPos()
			node, err := s.read(t)
			if err != nil {
				return Row{}, fmt.Errorf("importer: xml: %w", err)
			}
			if t.Name.Local != "event" {
				return Row{Line: line, Err: fmt.Errorf("importer: line %d: unexpected element <%s> in <events>", line, t.Name.Local)}, nil
			}
			msg, err := xmlEvent(node)
			if err != nil {
				return Row{Line: line, Err: fmt.Errorf("importer: line %d: %w", line, err)}, nil
			}
			return Row{Line: line, Message: msg}, nil
		case xml.EndElement: // </events>
			s.done = true
		}
	}
	return Row{}, io.EOF
}

// maxXMLNodes bounds the elements of one <event>.
const maxXMLNodes = 10000

// read reads the element opened by start, up to its end tag.
func (s *xmlSource) read(start xml.StartElement) (*xmlNode, error) {
	root := &xmlNode{name: start.Name.Local, attrs: start.Attr}
	stack := []*xmlNode{root}
	nodes := 1
	for len(stack) > 0 {
		tok, err := s.dec.Token()
		if err != nil {
			return nil, err
		}
		top := stack[len(stack)-1]
		switch t := tok.(type) {
		case xml.StartElement:
			if nodes++; nodes > maxXMLNodes {
				return nil, errors.New("more than 10000 elements in one record")
			}
			n := &xmlNode{name: t.Name.Local, attrs: t.Attr}
			top.children = append(top.children, n)
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			top.text.Write(t)
		}
	}
	return root, nil
}

func attr(n *xmlNode, name string) (string, bool) {
	for _, a := range n.attrs {
		if a.Name.Local == name {
			return a.Value, true
		}
	}
	return "", false
}

func xmlEvent(n *xmlNode) (map[string]any, error) {
	typ, ok := attr(n, "type")
	if !ok {
		return nil, errors.New("<event> without type attribute")
	}
	if !xmlKinds[typ] {
		return nil, fmt.Errorf("<event> has unknown type %q", typ)
	}
	msg := map[string]any{"type": typ}
	for _, c := range n.children {
		if _, dup := msg[c.name]; dup {
			return nil, fmt.Errorf("repeated <%s> in <event>", c.name)
		}
		switch {
		case xmlTextFields[c.name]:
			if len(c.children) > 0 {
				return nil, fmt.Errorf("<%s> must hold text only", c.name)
			}
			msg[c.name] = strings.TrimSpace(c.text.String())
		case c.name == "properties":
			msg[c.name] = xmlObject(c, true)
		case c.name == "traits":
			msg[c.name] = xmlObject(c, false)
		case c.name == "context":
			ctx, err := xmlContext(c)
			if err != nil {
				return nil, err
			}
			msg[c.name] = ctx
		default:
			return nil, fmt.Errorf("unknown element <%s> in <event>", c.name)
		}
	}
	return msg, nil
}

func xmlContext(n *xmlNode) (map[string]any, error) {
	var ids []*xmlNode
	rest := &xmlNode{name: n.name}
	for _, c := range n.children {
		if c.name == "externalIds" {
			if ids != nil {
				return nil, errors.New("repeated <externalIds> in <context>")
			}
			ids = append([]*xmlNode{}, c.children...)
			continue
		}
		rest.children = append(rest.children, c)
	}
	ctx := xmlObject(rest, false)
	if ids != nil {
		list := []any{}
		for _, e := range ids {
			if e.name != "externalId" {
				return nil, fmt.Errorf("unexpected <%s> in <externalIds>", e.name)
			}
			typ, ok := attr(e, "type")
			if !ok || len(e.children) > 0 {
				return nil, errors.New("<externalId> needs a type attribute and text")
			}
			list = append(list, map[string]any{"id": strings.TrimSpace(e.text.String()), "type": typ, "collection": "users", "encoding": "none"})
		}
		ctx["externalIds"] = list
	}
	return ctx, nil
}

// xmlObject converts an element's children to an object (see the format
// description above). xmlValue never returns a slice, so a slice value
// always comes from a repeated name.
func xmlObject(n *xmlNode, numbers bool) map[string]any {
	obj := make(map[string]any, len(n.children))
	for _, c := range n.children {
		v := xmlValue(c, numbers)
		prev, ok := obj[c.name]
		switch p := prev.(type) {
		case []any:
			obj[c.name] = append(p, v)
		default:
			if ok {
				obj[c.name] = []any{p, v}
			} else {
				obj[c.name] = v
			}
		}
	}
	return obj
}

func xmlValue(n *xmlNode, numbers bool) any {
	if len(n.children) > 0 {
		return xmlObject(n, numbers)
	}
	text := strings.TrimSpace(n.text.String())
	if numbers {
		if v, ok := number(text).(json.Number); ok {
			return v
		}
	}
	return text
}
