"""Whether ONNX Runtime's CUDA provider starts without help, and after preload_dlls (a graph of one Relu)."""
import onnxruntime as ort
from onnx import TensorProto, helper
value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [1])
graph = helper.make_graph([helper.make_node("Relu", ["input"], ["y"])], "g", [value("input")], [value("y")])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
model.ir_version = 9
providers = ["CUDAExecutionProvider"]
print("plain session:", ort.InferenceSession(model.SerializeToString(), providers=providers).get_providers())
ort.preload_dlls()
print("after preload_dlls:", ort.InferenceSession(model.SerializeToString(), providers=providers).get_providers())
