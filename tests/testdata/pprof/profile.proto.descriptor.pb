
cardguard/pprof/profile.protocardguard.pprof"Ô
Profile/
sample_type (2.cardguard.pprof.ValueType'
sample (2.cardguard.pprof.Sample)
mapping (2.cardguard.pprof.Mapping+
location (2.cardguard.pprof.Location+
function (2.cardguard.pprof.Function
string_table (	
drop_frames (
keep_frames (

time_nanos	 (
duration_nanos
 (/
period_type (2.cardguard.pprof.ValueType
period (
comment (
default_sample_type (
doc_url ("'
	ValueType
type (
unit ("S
Sample
location_id (
value (%
label (2.cardguard.pprof.Label"@
Label
key (
str (
num (
num_unit ("Ý
Mapping

id (
memory_start (
memory_limit (
file_offset (
filename (
build_id (
has_functions (
has_filenames (
has_line_numbers	 (
has_inline_frames
 ("s
Location

id (

mapping_id (
address (#
line (2.cardguard.pprof.Line
	is_folded ("9
Line
function_id (
line (
column ("_
Function

id (
name (
system_name (
filename (

start_line (bproto3