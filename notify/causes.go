package notify

import (
	"strings"
	"unicode"
)

// cause is one OMS cause as residents are told it.
type cause struct {
	keys   []string // how OMS systems write it, in lower case
	zh, en string
}

// causes are the OMS causes seen most, in the words a resident understands.
// An OMS writes causes in English or Chinese, as codes or free text; a
// resident reads neither a foreign language nor an engineer's shorthand.
var causes = []cause{
	{[]string{"tree contact", "tree", "trees", "vegetation", "tree on line", "树障", "树木碰线", "树线矛盾"}, "树木碰触线路", "a tree touching a power line"},
	{[]string{"cable fault", "cable failure", "underground cable fault", "电缆故障", "电缆击穿"}, "电缆故障", "a cable fault"},
	{[]string{"line fault", "overhead line fault", "conductor down", "line down", "线路故障", "断线"}, "线路故障", "a power line fault"},
	{[]string{"transformer fault", "transformer failure", "变压器故障", "配变故障"}, "变压器故障", "a transformer fault"},
	{[]string{"equipment failure", "equipment fault", "switchgear fault", "设备故障", "开关故障"}, "供电设备故障", "an equipment fault"},
	{[]string{"lightning", "lightning strike", "雷击"}, "雷击", "lightning"},
	{[]string{"storm", "severe weather", "wind", "typhoon", "台风", "大风", "恶劣天气"}, "恶劣天气", "severe weather"},
	{[]string{"ice", "snow", "icing", "覆冰", "冰雪"}, "线路覆冰", "ice on the lines"},
	{[]string{"flood", "flooding", "水浸", "洪水", "内涝"}, "设备进水", "flooding"},
	{[]string{"fire", "火灾"}, "火灾", "a fire"},
	{[]string{"animal", "animal contact", "bird", "birds", "bird nest", "小动物", "鸟害", "鸟窝"}, "小动物或鸟类碰触设备", "an animal touching the equipment"},
	{[]string{"vehicle", "vehicle accident", "car hit pole", "pole hit", "车辆撞杆", "撞杆"}, "车辆撞击电杆", "a vehicle hitting a pole"},
	{[]string{"third party damage", "third-party damage", "excavation", "dig-in", "construction damage", "外力破坏", "施工破坏", "挖断电缆"}, "施工等外力破坏", "damage by construction work"},
	{[]string{"kite", "foreign object", "balloon", "漂浮物", "风筝", "异物"}, "异物挂线", "an object caught on a line"},
	{[]string{"overload", "overloading", "过载", "超载", "重过载"}, "用电负荷过大", "too much demand on the line"},
	{[]string{"planned maintenance", "maintenance", "planned work", "inspection", "计划检修", "检修", "设备检修"}, "计划检修", "planned maintenance"},
	{[]string{"upgrade", "network upgrade", "grid upgrade", "改造", "电网改造", "线路改造"}, "电网改造", "grid upgrade work"},
	{[]string{"load shedding", "demand response", "有序用电", "限电"}, "有序用电", "load shedding"},
	{[]string{"upstream outage", "supply interruption", "transmission fault", "上级电源故障", "上级停电"}, "上级电网故障", "a fault on the supplying network"},
}

// causeIndex finds a cause by its normalised key.
var causeIndex = func() map[string]*cause {
	m := map[string]*cause{}
	for i := range causes {
		for _, k := range causes[i].keys {
			m[normCause(k)] = &causes[i]
		}
	}
	return m
}()

// normCause folds case, "_" and "-" and runs of spaces: "Tree_Contact" and
// "tree  contact" are one cause.
func normCause(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '_' || r == '-' {
			return ' '
		}
		return unicode.ToLower(r)
	}, s)
	return strings.Join(strings.Fields(s), " ")
}

// Generic phrases for a cause the table does not know: a fault, or for a
// planned outage planned maintenance.
var (
	genericCause = cause{zh: "电网故障", en: "a fault on the power network"}
	plannedCause = *causeIndex["planned maintenance"]
)

// CausePhrase is how residents are told an OMS cause in lang ("en", else
// Chinese): the known cause's phrase, or for a cause the table does not know
// a generic phrase (a fault; planned maintenance when planned). What an OMS
// wrote never reaches a resident as written, so a compromised feed cannot
// put a link or any words of its own into an SMS in the utility's name; the
// raw text stays on the outage for operators. known reports whether the
// table knew the cause; an empty cause has no phrase. The page shows causes
// through it too.
func CausePhrase(lang, raw string, planned bool) (phrase string, known bool) {
	if strings.TrimSpace(raw) == "" {
		return "", false
	}
	c, known := causeIndex[normCause(raw)]
	switch {
	case known:
	case planned:
		c = &plannedCause
	default:
		c = &genericCause
	}
	if lang == "en" {
		return c.en, known
	}
	return c.zh, known
}

// CausePhrases are an OMS cause as the page tells it, per language (zh,
// en): the phrase of the table, the cause itself when written in that
// language, or absent.
func CausePhrases(s string) map[string]string {
	out := map[string]string{}
	for _, lang := range languages {
		if c := localCause(lang, s); c != "" {
			out[lang] = c
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// localCause is the phrase for an OMS cause in lang, as the operators' page
// shows it. A cause the table does not know is passed on only when it is
// written in lang (Chinese for zh, Latin letters for en), else left out: the
// Chinese page does not quote the OMS's English. SMS never take this path
// (CausePhrase).
func localCause(lang, s string) string {
	if s == "" {
		return ""
	}
	if c, ok := causeIndex[normCause(s)]; ok {
		if lang == "en" {
			return c.en
		}
		return c.zh
	}
	han, latin := 0, 0
	for _, r := range s {
		switch {
		case unicode.Is(unicode.Han, r):
			han++
		case r < unicode.MaxASCII && unicode.IsLetter(r):
			latin++
		}
	}
	switch {
	case lang == "en" && han == 0 && latin > 0:
		return s
	case lang != "en" && han > 0:
		return s
	}
	return ""
}
