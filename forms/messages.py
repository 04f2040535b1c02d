"""The English sentences forms/ says to people, as catalogue templates, so the server can say them in Indonesian."""

# forms/ stays free of the server: these are plain strings the engines keep writing as they are; the
# server's catalogue (scripts/messages, server/i18n.py) holds their Indonesian, and translate_known finds a
# formatted sentence by its template. tests/test_i18n.py walks forms/ and fails on a sentence none matches.
# Placeholders are named after what they hold; a value the code quotes (!r) arrives quoted.
# More of forms/' sentences sit in server/i18n.py ENGINE_MESSAGES / ENGINE_TEMPLATES, from before this list.


def N_(message: str) -> str:  # the name pybabel looks for
    return message


FORM_MESSAGES = [
    # form definitions (forms/definition.py)
    N_("… and %(count)s more"),
    N_("1 problem in the form definition; %(path)s: %(problem)s"),
    N_("%(count)s problems in the form definition; %(path)s: %(problem)s"),
    N_("no English text ('en'); it is recommended"),
    N_("the Indonesian text is required"),
    N_("a form definition must be a JSON object"),
    N_("unknown key; kunjung ignores it"),
    N_("nested more than %(limit)s levels deep"),
    N_("object keys must be strings, not %(key)s"),
    N_("numbers must be finite (JSON has no NaN or Infinity)"),
    N_("integers must fit in 64 bits to be stored"),
    N_("no select uses this choice list"),
    N_("duplicate field name %(name)s (first at %(path)s); names are unique in a form"),
    N_("a %(kind)s needs the name of its choice list (or a list_file)"),
    N_("a select takes its choices from a list or from a file, not both"),
    N_("a choice file is a .csv, .xml or .geojson file attached to the form"),
    N_("only a media question (image, audio, video, file) has an accept list"),
    N_("search()'s first argument is the quoted name of the form's attached CSV file without '.csv': search('desa')"),
    N_("type %(type)s has no parameter %(name)s (it takes: %(known)s)"),
    N_("none"),
    N_("the %(name)s parameter names a column of a choice file: only with a list_file"),
    N_("type %(type)s takes only %(accepted)s"),
    N_("type %(type)s has no value to save"),
    N_("refers to itself (${%(name)s})"),
    N_("circular reference among calculations and defaults: %(cycle)s"),
    N_("only one repeat can be the household roster, and %(name)s (%(path)s) already is"),
    N_("field %(name)s was %(kind)s in the previous version; a new version cannot change a field's type (add a field "
       "with a new name instead)"),
    N_("field %(name)s was %(before)s and is now %(after)s; its answers would change shape (use a new name)"),
    N_("outside any repeat"),
    # answers (forms/answers.py) and defaults (forms/fieldtypes.py)
    N_("every row needs an _id: a lowercase UUID like 0b0f6b1e-8a3e-4b53-9d3b-1f8f0a3b2c01"),
    N_("a default must be a string, number or boolean"),
    N_("a select_multiple default must be a list of choice names"),
    N_("%(type)s questions take no default (the answer is a file the device sends)"),
    N_("must be an ISO-8601 date (YYYY-MM-DD)"),
    N_("must be an ISO-8601 date and time"),
    N_("is not part of a geopoint (lat, lon, accuracy_m, altitude_m)"),
    # a form's files (forms/attachments.py)
    N_("has no header row"),
    N_("has an empty header row"),
    N_("declares a DOCTYPE; a choice file has none"),
    N_("is not a GeoJSON FeatureCollection"),
    N_("label media are %(kinds)s"),
    N_("%(kind)s label media must be %(family)s/* files, not %(type)s"),
    N_("a big-image needs an image in the same language, shown first"),
    # XLSForm workbooks (forms/xlsform.py)
    N_("invalid XLSForm: %(summary)s"),
    N_("invalid XLSForm: %(summary)s (and %(more)s more)"),
    N_("the file is %(size)s bytes; an XLSForm is at most %(limit)s bytes"),
    N_("the workbook has %(count)s parts; an XLSForm has far fewer (at most %(limit)s)"),
    N_("the workbook unpacks to %(size)s bytes; kunjung reads at most %(limit)s (an XLSForm is far smaller)"),
    N_("part %(part)s inflates %(ratio)s times (to %(size)s bytes); kunjung refuses more than %(limit)s times above "
       "1 MB, as a zip bomb would"),
    N_("part %(part)s declares a DOCTYPE; a workbook's XML has none, and kunjung does not read DTDs (entities can "
       "expand without bound)"),
    N_("the workbook has more than %(limit)s filled cells; an XLSForm has far fewer"),
    N_("the sheet has more than %(limit)s columns; an XLSForm has far fewer"),
    N_("the sheet has more than %(limit)s rows; an XLSForm has far fewer"),
    N_("the workbook has no 'survey' sheet"),
    N_("the survey sheet has no 'type' column"),
    N_("column '%(column)s': '%(base)s' cannot have a language"),
    N_("column '%(column)s': only Indonesian (id) and English (en) are kept; ignored"),
    N_("columns '%(first)s' and '%(second)s' say the same thing"),
    N_("no form_id in the settings sheet; using '%(form)s' from the file name"),
    N_("no version in the settings sheet; using '%(version)s'"),
    N_("choice has no %(missing)s"),
    N_("choice '%(name)s' in list '%(list)s' has no label; using its name"),
    N_("duplicate name '%(name)s' (first used at %(where)s)"),
    N_("row has a name or label but no type"),
    N_("'%(type)s' row has no name"),
    N_("'%(type)s' without a matching 'begin %(kind)s'"),
    N_("'%(type)s' closes 'begin %(kind)s' '%(name)s' opened at %(where)s"),
    N_("'begin %(kind)s' '%(name)s' has no 'end %(kind)s'"),
    N_("%(what)s has no Indonesian (id) text; the English text is used for it"),
    N_("type '%(type)s' needs the name of its choice list, like '%(type)s yes_no'"),
    N_("type '%(type)s' needs the name of its file, like '%(type)s villages.csv'"),
    N_("type '%(type)s': the choice file must be .csv, .xml or .geojson, not %(name)s"),
    N_("type '%(type)s': 'or_other' cannot be combined with a choice_filter"),
    # why a question type is refused: the value of "type '…' is not supported: %(reason)s"
    N_("type '%(type)s' is not supported: %(reason)s"),
    N_("unknown question type"),
    N_("barcode scanning is not supported"),
    N_("loops over a choice list are not supported; use a repeat"),
    N_("external selects need ODK's external app and an itemsets.csv; use select_one_from_file with an attached "
       "CSV"),
    N_("background recordings are not collected by kunjung (personal data nobody agreed to give); use an audio "
       "question"),
    N_("OpenStreetMap questions are not supported; use geopoint and text"),
    N_("a signature is an image question with the appearance 'signature'"),
    N_("only single points (geopoint) are supported"),
    N_("range widgets are not supported; use integer or decimal with a constraint"),
    N_("rank questions are not supported"),
    N_("acknowledge questions are not supported; use a note or a select_one"),
    N_("time-only questions are not supported; use dateTime"),
    N_("hidden questions are not supported; use calculate"),
    N_("external instances need instance() in expressions, which kunjung does not evaluate; use pulldata() or "
       "select_one_from_file with an attached file"),
    # more of forms/definition.py, forms/fieldtypes.py, forms/attachments.py and forms/xlsform.py
    N_("must be an identifier: a letter or '_' followed by letters, digits or '_', at most %(limit)s characters"),
    N_("must be a media type (image/jpeg, image/*) or an extension (.pdf)"),
    N_("must be a household field name: snake_case, at most %(limit)s characters, no '$', '.' or NUL"),
    N_("%(kind)s is not a JSON value"),
    N_("must be an object of label media by kind: {\"image\": {\"id\": \"file.jpg\"}}"),
    N_("must be an object of file names by language, like {\"id\": \"rumah.jpg\"}"),
    N_("must be a file name, without '/', '\\' or control characters"),
    N_("must be an ISO-8601 date text"),
    N_("must be a whole number above 0"),
    N_("must be a column name (letters, digits, '_', '-', ':' or '.')"),
    N_("%(code)s is not a Kemendagri code like 32, 32.04, 32.04.05 or 32.04.05.2001"),
    N_("%(file)s is not an Excel workbook (.xlsx or .xls)"),
    N_("the file"),
    N_("cannot read the .xlsx workbook: %(problem)s"),
    N_("cannot read the .xls workbook: %(problem)s"),
    N_("metadata type '%(type)s' is not collected by kunjung; row skipped"),
    N_("type '%(type)s': only one file name follows '%(command)s' (or_other is not supported with a choice file)"),
    N_("'%(name)s' uses choice list '%(list)s', which is not on the choices sheet"),
    N_("sheet '%(sheet)s' is not used by kunjung; ignored"),
    N_("setting '%(setting)s' is not used by kunjung; ignored"),
    N_("default_language '%(language)s' is not supported; use Indonesian (id) or English (en)"),
    N_("duplicate choice name '%(name)s' in list '%(list)s' (first at %(where)s); choice names must be unique in a "
       "list, so allow_choice_duplicates is not supported"),
    N_("parameters: %(pair)s is not key=value (parameters are written 'key=value key2=value2')"),
    N_("parameter '%(name)s' is not used by kunjung for type %(type)s; ignored"),
    N_("required '%(value)s' must be yes or no (conditional required is not supported)"),
    N_("column '%(column)s' is not supported by kunjung; ignored"),
    N_("column '%(column)s' is not an XLSForm column kunjung uses; ignored"),
    # phrases said inside the sentences above (translate_known says a placeholder's catalogued value too)
    N_("a date text YYYY-MM-DD"),
    N_("an ISO-8601 date and time"),
    N_("a date YYYY-MM-DD"),
    N_("No. KK digits 1-6"),
]
