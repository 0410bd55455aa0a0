"""The sparsecc graph IR: values, nodes, graphs, text form, verifier and interpreter."""
from .graph import DTYPES, SYM, DType, Graph, Node, Ref, Value, dtype_name, torch_dtype
from .interpreter import Interpreter, run
from .text import parse, print_graph
from .verify import verify

__all__ = ["DTYPES", "SYM", "DType", "Graph", "Interpreter", "Node", "Ref", "Value",
           "dtype_name", "parse", "print_graph", "run", "torch_dtype", "verify"]
