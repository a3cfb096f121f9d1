"""Emergency-call triage: caller state, offline transcript, gravity, non-genuine signals, priority queue.

Intended use: decision support for a human dispatcher handling calls from people in emergencies.
Inferring employees' emotions (e.g. of the call-takers) is out of scope and, in workplaces,
prohibited under the EU AI Act.
"""

from vocalis.triage.batch import AnalyzerSpec, find_calls, triage_files
from vocalis.triage.call import CallAnalyzer, CallReport, TriageConfig
from vocalis.triage.caller import EMOTION_TO_STATE, CallerStateModel
from vocalis.triage.lexicon import GravityHit, GravityLexicon, Term, gravity_score
from vocalis.triage.priority import PriorityConfig, Reason, Signal
from vocalis.triage.report import TriageQueue, build_report, render_html, write_report
from vocalis.triage.transcript import Transcriber, Transcript, speech_spans

__all__ = [
    "EMOTION_TO_STATE", "AnalyzerSpec", "CallAnalyzer", "CallReport", "CallerStateModel", "GravityHit",
    "GravityLexicon", "PriorityConfig", "Reason", "Signal", "Term", "Transcriber", "Transcript", "TriageConfig",
    "TriageQueue", "build_report", "find_calls", "gravity_score", "render_html", "speech_spans", "triage_files",
    "write_report",
]
